"""Races between sends, dispatchers and halts: a lead gets each email once or not at all, and
never after nurturing stopped.

The concurrent tests need row locks held by one connection and seen by another (SELECT ... FOR
UPDATE, SKIP LOCKED): they run in the PostgreSQL pass. Every thread that touches the database
closes its connection when it is done.
"""

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction

from crm import services as crm_services
from crm.models import Lead, LeadStatus, Notification
from nurture import outbox, sending, services, tasks
from nurture.dispatch import dispatch_batches, dispatch_due
from nurture.models import Enrollment, OutboundMessage
from tests.celery_worker import celery_worker, use_broker
from tests.smtp_server import RecordingHandler

MSK = ZoneInfo("Europe/Moscow")
LIVE = pytest.mark.django_db(transaction=True, serialized_rollback=True)
WAIT = 20  # seconds: the bound on every wait in this file
SEND = "nurture.tasks.send_messages"

ENROLLED_AT = datetime(2025, 12, 18, 15, 0, tzinfo=MSK)  # a Thursday
FIRST_SEND = datetime(2025, 12, 23, 15, 0, tzinfo=MSK)  # three working days later
SECOND_SEND = datetime(2025, 12, 26, 15, 0, tzinfo=MSK)  # and three more

State = OutboundMessage.State


@dataclass
class TimedHandler(RecordingHandler):
    """Records when each email was accepted (time.monotonic(), by Message-ID) and tells when a
    send reaches RCPT (`at_rcpt`) and DATA (`in_data`); with `hold` set, every DATA waits for it."""

    accepted_at: dict[str, float] = field(default_factory=dict)
    at_rcpt: threading.Event = field(default_factory=threading.Event)
    in_data: threading.Event = field(default_factory=threading.Event)
    hold: threading.Event | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.at_rcpt.set()
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        self.in_data.set()
        if self.hold is not None:
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, self.hold.wait, WAIT), "DATA held too long"
        answer = await super().handle_DATA(server, session, envelope)
        if answer.startswith("250"):
            with self.condition:
                self.accepted_at[self.received[-1]["Message-ID"]] = time.monotonic()
        return answer


@pytest.fixture
def smtp_handler():
    """The shared smtp_server fixture, with a handler that notes when mail arrives."""
    return TimedHandler()


@pytest.fixture
def row_locks():
    if connection.vendor == "sqlite":
        pytest.skip(
            "needs row locks that one connection holds and another waits for (SELECT ... FOR "
            "UPDATE, SKIP LOCKED), which SQLite does not have: runs in the PostgreSQL pass"
        )


@pytest.fixture
def clock_start():
    """Thursday 18 December 2025, 15:00 in Moscow (the clock stands still, in every thread)."""
    return ENROLLED_AT


@pytest.fixture
def ivan(clock, nurtured_lead):
    """Ivan's lead, alice's, moved to nurturing at ENROLLED_AT: the first send is FIRST_SEND."""
    return nurtured_lead


@pytest.fixture
def nurtured_leads(clock, make_lead, alice):
    """`count` more leads of alice's, moved to nurturing at ENROLLED_AT (transactional tests)."""

    def make(count):
        return [
            make_lead(
                alice,
                status_code="nurturing",
                first_name=f"Client{n}",
                email=f"client{n}@client.example",
                language="ru",
            )
            for n in range(count)
        ]

    return make


def dispatch(clock, moment, tmp_path) -> list[int]:
    """Beat's dispatcher at `moment`; the sends it enqueues go to a broker no worker reads, so
    the test itself plays the workers."""
    clock.move_to(moment)
    with use_broker("filesystem", tmp_path):
        return dispatch_due()


def run_together(*calls):
    """Run each call in its own thread (closing its database connection after), all released
    at once; return their results in order."""
    barrier = threading.Barrier(len(calls))
    results, errors = [None] * len(calls), []

    def run(index, call):
        try:
            barrier.wait(WAIT)
            results[index] = call()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(index, call), daemon=True)
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads), "a racing thread did not finish"
    if errors:
        raise errors[0]
    return results


class Background(threading.Thread):
    """One call in a thread of its own, with its own database connection (closed at the end)."""

    def __init__(self, call):
        super().__init__(daemon=True)
        self.call, self.result, self.error = call, None, None
        self.backend_pid = None
        self.started_work = threading.Event()

    def run(self):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                [self.backend_pid] = cursor.fetchone()
            self.started_work.set()
            self.result = self.call()
        except BaseException as error:  # noqa: BLE001 - re-raised by outcome()
            self.error = error
        finally:
            self.started_work.set()
            connection.close()

    def outcome(self):
        self.join(WAIT)
        assert not self.is_alive(), "the thread did not finish"
        if self.error:
            raise self.error
        return self.result


def blockers_of(thread: Background) -> list[int]:
    """Wait (bounded) until `thread`'s connection waits for a lock; return who holds it."""
    assert thread.started_work.wait(WAIT)
    deadline = time.monotonic() + WAIT
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_blocking_pids(%s)", [thread.backend_pid])
            [pids] = cursor.fetchone()
            if pids:
                return pids
            assert thread.is_alive(), "the thread finished without ever waiting for a lock"
            time.sleep(0.005)  # polling the lock table; no simulated time passes here
    raise AssertionError(f"the thread did not wait for a lock within {WAIT} s")


def commit_moment(call):
    """Run `call` in a transaction; return its result and time.monotonic() right after COMMIT."""
    moments = []
    with transaction.atomic():
        transaction.on_commit(lambda: moments.append(time.monotonic()))
        result = call()
    return result, moments[0]


# --- Duplicate delivery ------------------------------------------------------------------------


def test_a_message_sent_twice_goes_out_once(ivan, clock, smtp_server):
    clock.move_to(FIRST_SEND)
    [message_id] = dispatch_due()

    first = sending.send_message(message_id)
    second = sending.send_message(message_id)

    assert (first, second) == ("sent", "already sent")
    assert len(smtp_server.handler.wait_for(1)) == 1
    message = OutboundMessage.objects.get(pk=message_id)
    assert (message.state, message.attempts) == (State.SENT, 1)


@LIVE
def test_two_workers_given_the_same_message_at_once_send_it_once(
    row_locks, nurtured_leads, clock, smtp_server, tmp_path
):
    nurtured_leads(10)
    message_ids = dispatch(clock, FIRST_SEND, tmp_path)
    assert len(message_ids) == 10

    for message_id in message_ids:
        send = partial(sending.send_message, message_id)
        outcomes = sorted(run_together(send, send))
        assert outcomes[1] == "sent", outcomes
        assert outcomes[0] in {"already sending", "already sent"}, outcomes

    emails = smtp_server.handler.wait_for(10)
    assert len(emails) == 10
    assert len({email["Message-ID"] for email in emails}) == 10
    assert set(OutboundMessage.objects.values_list("state", "attempts")) == {(State.SENT, 1)}


# --- Concurrent dispatchers --------------------------------------------------------------------


@LIVE
@pytest.mark.slow
def test_two_dispatchers_at_once_create_each_message_once_and_a_worker_sends_each_once(
    row_locks, clock, alice, status, default_sequence, smtp_server, settings, tmp_path
):
    count, batch_size = 60, 6  # ten batches for the two dispatchers to fight over
    settings.NURTURE_MAILBOX_PER_MINUTE = settings.NURTURE_MAILBOX_PER_DAY = count
    nurturing = status("nurturing")
    leads = Lead.objects.bulk_create(
        Lead(
            title=f"Project {n}",
            first_name=f"Client{n}",
            email=f"client{n}@client.example",
            language="ru",
            status=nurturing,
            responsible=alice,
        )
        for n in range(count)
    )
    Enrollment.objects.bulk_create(
        Enrollment(
            lead=lead, sequence=default_sequence, enrolled_at=ENROLLED_AT, next_send_at=FIRST_SEND
        )
        for lead in leads
    )
    clock.move_to(FIRST_SEND)

    # PostgreSQL and Redis, as in production (and clear of the filesystem transport's race
    # between a producer writing a message and the worker reading it: see test_simulation).
    def dispatcher():
        """What beat's task does: each batch's sends published as soon as it commits."""
        created = []
        for ids in dispatch_batches(batch_size=batch_size):
            tasks.publish_sends(ids)
            created += ids
        return created

    with celery_worker("redis", tmp_path) as worker:
        first, second = run_together(dispatcher, dispatcher)
        emails = smtp_server.handler.wait_for(count, timeout=3 * WAIT)
        outcomes = worker.finished.wait_for_outcomes(count, name=SEND, timeout=WAIT)

    assert len(first) + len(second) == count
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(OutboundMessage.objects.values_list("pk", flat=True))
    assert set(OutboundMessage.objects.values_list("number", flat=True)) == {1}
    assert OutboundMessage.objects.values("enrollment").distinct().count() == count
    assert set(Enrollment.objects.values_list("sent_count", "next_send_at")) == {(1, SECOND_SEND)}
    assert outcomes == dict.fromkeys(first + second, "sent")
    assert sorted(email.rcpt_tos[0] for email in emails) == sorted(lead.email for lead in leads)
    assert set(OutboundMessage.objects.values_list("state", flat=True)) == {State.SENT}


# --- Halting while sending ---------------------------------------------------------------------


def stop_by_status_change(lead, manager):
    """The manager moves the lead on: the status change commits, then nurturing halts.
    Returns the time.monotonic() of the status change's commit."""
    return commit_moment(lambda: crm_services.change_status(lead, "in_progress", by=manager))[1]


def stop_by_hand(lead, manager):
    """The manager stops nurturing the lead; returns the time.monotonic() of the halt's commit."""
    halted, halted_at = commit_moment(
        lambda: services.halt(Enrollment.objects.filter(lead=lead), Enrollment.HaltReason.MANUAL)
    )
    assert halted == 1
    return halted_at


# Where the send is when the stop sets off: both at once; the claim committed and the send about
# to lock the lead; the email at RCPT; the email at DATA (the last two while the send holds its
# locks, so the stop must wait for it).
STOP_WHEN = ("together", "claimed", "rcpt", "data")


@LIVE
@pytest.mark.slow
def test_an_email_never_goes_out_after_nurturing_stopped(
    row_locks, nurtured_leads, clock, alice, smtp_server, settings, monkeypatch, tmp_path
):
    settings.NURTURE_MAILBOX_PER_MINUTE = 100
    leads = nurtured_leads(32)
    message_ids = dispatch(clock, FIRST_SEND, tmp_path)
    messages = {m.to_email: m for m in OutboundMessage.objects.filter(pk__in=message_ids)}
    claimed = threading.Event()
    deliver = sending._deliver

    def watched_deliver(messages):
        claimed.set()
        return deliver(messages)

    monkeypatch.setattr(sending, "_deliver", watched_deliver)
    outcomes = []

    for n, lead in enumerate(leads):
        when = STOP_WHEN[n % len(STOP_WHEN)]
        claimed.clear()
        handler = smtp_server.handler
        handler.at_rcpt, handler.in_data = threading.Event(), threading.Event()
        ready = {"claimed": claimed, "rcpt": handler.at_rcpt, "data": handler.in_data}.get(when)
        stop = stop_by_status_change if n // len(STOP_WHEN) % 2 else stop_by_hand

        def stop_when_ready(ready=ready, stop=stop, lead=lead, when=when):
            assert ready is None or ready.wait(WAIT), f"the send never got to {when}"
            return stop(lead, alice)

        message = messages[lead.email]
        sent, stopped_at = run_together(partial(sending.send_message, message.pk), stop_when_ready)
        outcomes.append((when, sent))

        message.refresh_from_db()
        to_lead = [e for e in smtp_server.received if e.rcpt_tos == [lead.email]]
        assert lead.enrollments.get().state == Enrollment.State.HALTED
        if sent == "sent":
            assert message.state == State.SENT
            [email] = to_lead
            assert smtp_server.handler.accepted_at[email["Message-ID"]] < stopped_at
        else:
            assert sent in {"cancelled", "already cancelled"}, (when, sent)
            assert message.state == State.CANCELLED
            assert to_lead == []

    assert len(smtp_server.received) == [sent for _, sent in outcomes].count("sent")
    # Stopped while the email was on the wire, the send finished first, every time.
    assert {sent for when, sent in outcomes if when in {"rcpt", "data"}} == {"sent"}


@LIVE
def test_a_halt_waits_for_the_send_in_flight_and_commits_after_the_email_went(
    row_locks, ivan, clock, alice, smtp_server, tmp_path
):
    [message_id] = dispatch(clock, FIRST_SEND, tmp_path)
    smtp_server.handler.hold = threading.Event()
    sender = Background(lambda: sending.send_message(message_id))
    sender.start()
    assert smtp_server.handler.in_data.wait(WAIT)  # the email is on the wire, locks held

    halter = Background(partial(stop_by_hand, ivan, alice))
    halter.start()
    assert blockers_of(halter) == [sender.backend_pid]
    smtp_server.handler.hold.set()

    assert sender.outcome() == "sent"
    halted_at = halter.outcome()
    [email] = smtp_server.handler.wait_for(1)
    assert smtp_server.handler.accepted_at[email["Message-ID"]] < halted_at
    assert OutboundMessage.objects.get(pk=message_id).state == State.SENT
    assert ivan.enrollments.get().state == Enrollment.State.HALTED


@LIVE
def test_a_send_waits_for_a_status_change_in_flight_and_then_does_not_go_out(
    row_locks, ivan, clock, alice, smtp_server, tmp_path
):
    [message_id] = dispatch(clock, FIRST_SEND, tmp_path)

    with transaction.atomic():
        assert crm_services.change_status(ivan, "in_progress", by=alice)  # lead row locked
        sender = Background(lambda: sending.send_message(message_id))
        sender.start()
        blockers = blockers_of(sender)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert blockers == [cursor.fetchone()[0]]

    assert sender.outcome() == "cancelled"
    assert smtp_server.received == []
    message = OutboundMessage.objects.get(pk=message_id)
    assert message.state == State.CANCELLED
    # Whichever the send locked first once the status change committed: the lead's new status,
    # or the enrollment the status change's receiver halted.
    assert message.error in {"lead left the enrolling status", "enrollment halted"}
    enrollment = ivan.enrollments.get()
    assert (enrollment.state, enrollment.halt_reason) == (
        Enrollment.State.HALTED,
        Enrollment.HaltReason.STATUS_CHANGE,
    )
    assert LeadStatus.objects.get(leads=ivan).code == "in_progress"


@LIVE
def test_a_batch_waits_for_a_status_change_in_flight_then_sends_to_everyone_else(
    row_locks, nurtured_leads, clock, alice, smtp_server, settings, tmp_path
):
    settings.NURTURE_MAILBOX_PER_MINUTE = 100
    leads = nurtured_leads(4)
    message_ids = dispatch(clock, FIRST_SEND, tmp_path)
    leaving = leads[2]

    with transaction.atomic():
        assert crm_services.change_status(leaving, "in_progress", by=alice)  # row locked
        sender = Background(lambda: sending.send_messages(message_ids))
        sender.start()
        blockers_of(sender)  # the batch waits for this lead before sending anything
        assert smtp_server.received == []

    outcomes = sender.outcome()
    leaving_message = OutboundMessage.objects.get(enrollment__lead=leaving)
    assert outcomes == {
        **dict.fromkeys(message_ids, "sent"),
        leaving_message.pk: "cancelled",
    }
    emails = smtp_server.handler.wait_for(3)
    assert sorted(e.rcpt_tos[0] for e in emails) == sorted(
        lead.email for lead in leads if lead != leaving
    )


# --- Reassigning while dispatching -----------------------------------------------------------


@LIVE
def test_a_dispatch_during_a_reassignment_leaves_the_lead_for_after_it(
    row_locks, ivan, clock, bob, olga, tmp_path
):
    clock.move_to(FIRST_SEND)
    with use_broker("filesystem", tmp_path):
        with transaction.atomic():
            assert crm_services.reassign(ivan, bob, by=olga)  # the lead's enrollments locked
            dispatcher = Background(dispatch_due)
            dispatcher.start()
            assert dispatcher.outcome() == []  # it skipped them, not writing alice's name

        [message_id] = dispatch_due()
    message = OutboundMessage.objects.get(pk=message_id)
    assert message.lead_manager == bob and message.sender == bob


@LIVE
def test_a_reassignment_during_a_dispatch_waits_for_it_and_takes_its_email_along(
    row_locks, ivan, clock, alice, bob, olga, tmp_path
):
    clock.move_to(FIRST_SEND)
    with use_broker("filesystem", tmp_path), transaction.atomic():
        [message_id] = dispatch_due()  # the enrollment locked, alice's email written
        reassigner = Background(lambda: crm_services.reassign(ivan, bob, by=olga))
        reassigner.start()
        blockers_of(reassigner)
        assert OutboundMessage.objects.get(pk=message_id).lead_manager == alice

    assert reassigner.outcome() is True
    assert OutboundMessage.objects.get(pk=message_id).lead_manager == bob


# --- A worker dying mid-send -------------------------------------------------------------------


def test_a_send_whose_worker_died_is_never_repeated_and_the_manager_is_told(
    ivan, clock, alice, smtp_server, settings, eager_tasks, django_capture_on_commit_callbacks
):
    clock.move_to(FIRST_SEND)
    [message_id] = dispatch_due()
    assert sending._claim([message_id])[0] == {
        message_id: "claimed"
    }  # ... and the worker dies before SMTP
    message = OutboundMessage.objects.get(pk=message_id)
    assert message.state == State.SENDING
    lease = timedelta(seconds=settings.NURTURE_SEND_LEASE_SECONDS)
    assert message.lease_expires_at == FIRST_SEND + lease

    clock.move_to(FIRST_SEND + lease - timedelta(seconds=1))
    assert outbox.reconcile_expired_leases() == 0  # it may still be sending

    clock.move_to(FIRST_SEND + lease + timedelta(seconds=1))
    assert outbox.reconcile_expired_leases() == 1

    message.refresh_from_db()
    assert message.state == State.UNKNOWN
    assert Notification.objects.get(user=alice).message == (
        "Email 1 of 6 to Ivan Petrov may or may not have been sent: "
        "check your mailbox's Sent folder."
    )
    assert sending.send_message(message_id) == "already unknown"
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.dispatch_due() == 0  # beat: leases, retries, due sends
    assert smtp_server.received == []

    clock.move_to(SECOND_SEND)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.dispatch_due() == 1

    [email] = smtp_server.handler.wait_for(1)
    second = OutboundMessage.objects.get(enrollment__lead=ivan, number=2)
    assert email["Message-ID"] == second.message_id
    assert "Очень хотим с Вами работать :)" in email.text
    assert second.state == State.SENT
    assert OutboundMessage.objects.get(pk=message_id).state == State.UNKNOWN
