"""Sending when the database or the broker fails under it: the fence before each email, the
journal of what the server accepted, publishing that failed, lost tasks, beat's own queue."""

import asyncio
import json
import os
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection

from crm import services as crm_services
from crm.celery import app
from crm.models import Activity, Lead, Notification
from nurture import journal, outbox, sending, tasks, transport
from nurture.dispatch import dispatch_due
from nurture.models import OutboundMessage
from tests.celery_worker import _reset_broker_pools, use_broker
from tests.smtp_server import RecordingHandler, free_port

MSK = ZoneInfo("Europe/Moscow")
LIVE = pytest.mark.django_db(transaction=True, serialized_rollback=True)
ENROLLED_AT = datetime(2025, 12, 18, 15, 0, tzinfo=MSK)  # a Thursday
FIRST_SEND = datetime(2025, 12, 23, 15, 0, tzinfo=MSK)  # three working days later
State = OutboundMessage.State


@pytest.fixture
def clock_start():
    return ENROLLED_AT


@pytest.fixture
def leads(clock, make_lead, alice, settings, django_capture_on_commit_callbacks):
    """Three leads of alice's, nurtured since ENROLLED_AT."""
    settings.NURTURE_MAILBOX_PER_MINUTE = 100
    made = []
    for n in range(3):
        lead = make_lead(alice, first_name=f"Client{n}", email=f"client{n}@client.example")
        with django_capture_on_commit_callbacks(execute=True):
            crm_services.change_status(lead, "nurturing", by=alice)
        made.append(lead)
    return made


@pytest.fixture
def message_ids(leads, clock, django_capture_on_commit_callbacks):
    """Their first messages, dispatched at FIRST_SEND and not sent (in the leads' order)."""
    clock.move_to(FIRST_SEND)
    with django_capture_on_commit_callbacks(execute=False):
        dispatch_due()
    return [
        OutboundMessage.objects.get(enrollment__lead=lead, number=1).pk
        for lead in sorted(leads, key=lambda lead: lead.pk)
    ]


def states(ids):
    return [OutboundMessage.objects.get(pk=pk).state for pk in ids]


class CuttingHandler(RecordingHandler):
    """Accepts mail; when the first email has arrived, runs `after_first` (blocking work, in a
    thread of its own) before answering."""

    after_first = None

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        if self.after_first is not None and len(self.received) == 1:
            await asyncio.get_running_loop().run_in_executor(None, self.after_first)
        return answer


@pytest.fixture
def smtp_handler():
    return CuttingHandler()


def terminate(pid: int) -> None:
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or "postgres",
        dbname=db["NAME"],
        autocommit=True,
    ) as admin:
        # With a timeout PostgreSQL waits until the session has ended: without one it only
        # signals it, and the next statement of a test could still find it alive.
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


@LIVE
@pytest.mark.postgres
def test_a_halt_that_commits_after_the_delivering_session_died_stops_its_email(
    message_ids, leads, smtp_server, alice
):
    if connection.vendor != "postgresql":
        pytest.skip("terminates a PostgreSQL session: runs in the PostgreSQL pass")
    by_message = {pk: OutboundMessage.objects.get(pk=pk).enrollment.lead_id for pk in message_ids}
    halted_lead = Lead.objects.get(pk=by_message[message_ids[1]])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()

    def cut_then_halt():
        # The worker's session dies with its locks; the halt then commits without waiting.
        terminate(pid)
        try:
            crm_services.change_status(halted_lead, "in_progress", by=alice)
        finally:
            connection.close()

    smtp_server.handler.after_first = cut_then_halt
    with pytest.raises(transport.LocksLost):
        sending.send_messages(message_ids)
    connection.close()

    assert [e.rcpt_tos for e in smtp_server.received] == [[leads_email(message_ids[0])]]
    assert outbox.replay_journals() == (1, 2)  # the first went; the other two never did
    assert states(message_ids) == [State.SENT, State.RETRY, State.RETRY]
    assert Activity.objects.filter(kind=Activity.Kind.EMAIL_OUT).count() == 1

    # The task's next try: the halted lead's email is cancelled, the other goes.
    assert sending.send_messages(message_ids) == {
        message_ids[0]: "already sent",
        message_ids[1]: "cancelled",
        message_ids[2]: "sent",
    }
    assert sorted(e.rcpt_tos[0] for e in smtp_server.received) == sorted(
        [leads_email(message_ids[0]), leads_email(message_ids[2])]
    )
    assert OutboundMessage.objects.get(pk=message_ids[2]).attempts == 1  # counted once


class FailsUnexplained(BaseEmailBackend):
    """A backend that hands its first email over and then fails in a way no server explains
    (it may have gone), after ending the delivering database session (`session_pid`)."""

    session_pid = None

    def send_messages(self, email_messages):
        terminate(self.session_pid)
        raise RuntimeError("the connection did something nobody expected")


@LIVE
@pytest.mark.postgres
def test_an_email_that_may_have_gone_is_not_given_back_when_the_fence_then_fails(
    message_ids, settings
):
    if connection.vendor != "postgresql":
        pytest.skip("terminates a PostgreSQL session: runs in the PostgreSQL pass")
    settings.EMAIL_BACKEND = f"{__name__}.FailsUnexplained"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [FailsUnexplained.session_pid] = cursor.fetchone()

    with pytest.raises(transport.LocksLost):
        sending.send_messages(message_ids)
    connection.close()

    assert outbox.replay_journals() == (0, 2)  # the two never tried go again; the first not
    assert states(message_ids) == [State.SENDING, State.RETRY, State.RETRY]


def leads_email(message_id: int) -> str:
    return OutboundMessage.objects.get(pk=message_id).enrollment.lead.email


def test_smtp_content_is_never_committed_when_the_fence_fails(smtp_server):
    emails = [
        EmailMessage("Hello", "Text", "alice@crm.example", [f"client{n}@client.example"])
        for n in range(3)
    ]
    calls = []

    def fence():
        calls.append(1)
        if len(calls) == 2:
            raise transport.LocksLost("gone")

    transmissions = [transport.Transmission(message=None, email=email) for email in emails]
    failure = transport.transmit(transmissions, deadline=float("inf"), fence=fence)

    assert failure == "gone"
    assert [t.tried for t in transmissions] == [True, True, False]
    assert transmissions[0].error is None and isinstance(
        transmissions[1].error, transport.LocksLost
    )
    assert [e.rcpt_tos for e in smtp_server.handler.wait_for(1)] == [["client0@client.example"]]
    # The server threw the unfinished email away; the next connection works as before.
    transmissions = [transport.Transmission(message=None, email=emails[2])]
    assert transport.transmit(transmissions, deadline=float("inf"), fence=lambda: None) == ""
    assert len(smtp_server.handler.wait_for(2)) == 2
    assert len(smtp_server.received) == 2


def write_dead_journal(lines: list[dict]) -> None:
    """A journal file as a worker process that died left it (nobody holds its lock)."""
    folder = journal.folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "elsewhere-4242-1.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"sent": 1')


@pytest.fixture
def claimed(message_ids):
    """The three messages claimed by a worker (which then dies): (pk, attempts, lease) each."""
    _, messages = sending._claim(message_ids)
    return [(m.pk, m.attempts, m.lease_expires_at.isoformat()) for m in messages]


def test_what_a_dead_worker_sent_is_recorded_and_what_it_never_tried_goes_again(
    claimed, message_ids, clock, settings
):
    first, second, third = message_ids
    message = OutboundMessage.objects.get(pk=first)
    write_dead_journal(
        [
            {"claimed": [list(c) for c in claimed], "boot": journal.BOOT_ID},
            {"trying": first},
            {
                "sent": first,
                "message_id": message.message_id,
                "provider_id": "esp-1",
                "at": FIRST_SEND.isoformat(),
            },
            {"trying": second},
        ]
    )
    path = journal.folder() / "elsewhere-4242-1.jsonl"

    assert outbox.replay_journals() == (1, 1)

    assert states(message_ids) == [State.SENT, State.SENDING, State.RETRY]
    message.refresh_from_db()
    assert (message.sent_at, message.provider_message_id) == (FIRST_SEND, "esp-1")
    assert Activity.objects.filter(kind=Activity.Kind.EMAIL_OUT).count() == 1
    assert OutboundMessage.objects.get(pk=third).attempts == 0
    assert not path.exists()  # replayed: gone
    # The one it was trying when it died may have gone: the reconciler says so, once due.
    clock.move_to(FIRST_SEND + timedelta(seconds=settings.NURTURE_SEND_LEASE_SECONDS + 1))
    assert outbox.reconcile_expired_leases() == 1
    assert states(message_ids) == [State.SENT, State.UNKNOWN, State.RETRY]
    assert Notification.objects.filter(message__contains="may or may not").count() == 1


def test_claims_written_before_a_reboot_are_not_believed(claimed, message_ids):
    write_dead_journal([{"claimed": [list(c) for c in claimed], "boot": "another-boot"}])

    assert outbox.replay_journals() == (0, 0)
    assert states(message_ids) == [State.SENDING] * 3  # left for the reconciler


def test_a_live_workers_claims_are_left_alone(claimed, message_ids):
    written, done = threading.Event(), threading.Event()

    def live_worker():  # a neighbour, still sending what it claimed
        own = journal.current()
        own.claimed(claimed)
        written.set()
        done.wait(10)
        os.close(own.fd)
        own.path.unlink()

    neighbour = threading.Thread(target=live_worker)
    neighbour.start()
    try:
        assert written.wait(10)
        assert outbox.replay_journals() == (0, 0)
        assert states(message_ids) == [State.SENDING] * 3
    finally:
        done.set()
        neighbour.join(10)


@contextmanager
def unreachable_broker():
    config = {
        "broker_url": f"redis://127.0.0.1:{free_port()}/0",
        "broker_transport_options": {"max_retries": 1},  # as crm/settings.py has it, quicker
        "task_always_eager": False,
        "task_publish_retry": False,
    }
    saved = {key: app.conf[key] for key in config}
    app.conf.update(config)
    _reset_broker_pools(app, close=False)
    try:
        yield
    finally:
        _reset_broker_pools(app, close=True)
        app.conf.update(saved)


def test_sends_that_could_not_be_published_go_at_the_next_tick(
    message_ids, clock, django_capture_on_commit_callbacks
):
    with unreachable_broker(), django_capture_on_commit_callbacks(execute=True):
        tasks.publish_sends(message_ids)

    assert states(message_ids) == [State.RETRY] * 3
    assert sorted(outbox.requeue_due_retries()) == sorted(message_ids)
    assert (
        "Could not be handed to the workers" in OutboundMessage.objects.get(pk=message_ids[0]).error
    )


def test_a_queued_message_with_the_queue_empty_is_published_again_within_a_minute(
    message_ids, clock, settings
):
    clock.move_to(FIRST_SEND + timedelta(seconds=settings.NURTURE_LOST_TASK_SECONDS - 1))
    assert outbox.requeue_lost_sends(queue_empty=True) == []

    clock.move_to(FIRST_SEND + timedelta(seconds=settings.NURTURE_LOST_TASK_SECONDS + 1))
    assert outbox.requeue_lost_sends(queue_empty=False) == []  # tasks are waiting: maybe its
    assert sorted(outbox.requeue_lost_sends(queue_empty=True)) == sorted(message_ids)
    assert outbox.requeue_lost_sends(queue_empty=True) == []  # and not again at once


@pytest.mark.redis
def test_the_send_queue_is_measured_on_redis(tmp_path, db):
    with use_broker("redis", tmp_path):
        assert tasks.send_queue_is_empty()
        tasks.send_messages.apply_async(([1],))
        assert not tasks.send_queue_is_empty()
        tasks.dispatch_due.apply_async()  # beat's queue is another one
        app.control.purge()
        assert tasks.send_queue_is_empty()


def test_the_queue_cannot_be_measured_without_a_broker(db):
    with unreachable_broker():
        assert not tasks.send_queue_is_empty()


def test_beats_tasks_have_a_queue_of_their_own_that_workers_consume():
    router = app.amqp.router
    assert router.route({}, "nurture.tasks.dispatch_due")["queue"].name == "beat"
    assert router.route({}, "nurture.tasks.send_messages")["queue"].name == "celery"
    assert set(app.amqp.queues) == {"celery", "beat"}  # what `celery worker` consumes
