"""A worker sends dispatched messages in batches: one claim, one connection, one record."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery import signals
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm import services as crm_services
from crm.models import Activity, Lead, Notification
from nurture import outbox, sending, tasks, transport
from nurture.dispatch import dispatch_due
from nurture.models import Enrollment, OutboundMessage
from tests.email_backends import EXPLODING_ADDRESS

MSK = ZoneInfo("Europe/Moscow")
ENROLLED_AT = datetime(2025, 11, 20, 19, 30, tzinfo=MSK)  # a Thursday evening
FIRST_SEND = datetime(2025, 11, 26, 10, 0, tzinfo=MSK)
State = OutboundMessage.State


@pytest.fixture
def clock_start():
    return ENROLLED_AT


@pytest.fixture
def nurtured_leads(make_lead, alice, settings, django_capture_on_commit_callbacks):
    """`count` leads of alice's, moved to nurturing at ENROLLED_AT."""
    settings.NURTURE_MAILBOX_PER_MINUTE = 100

    def make(count):
        leads = []
        for n in range(count):
            lead = make_lead(alice, first_name=f"Client{n}", email=f"client{n}@client.example")
            with django_capture_on_commit_callbacks(execute=True):
                crm_services.change_status(lead, "nurturing", by=alice)
            leads.append(lead)
        return leads

    return make


@pytest.fixture
def dispatched(clock, django_capture_on_commit_callbacks):
    """Dispatch what is due at FIRST_SEND, without sending; the new messages' ids."""

    def run():
        clock.move_to(FIRST_SEND)
        with django_capture_on_commit_callbacks(execute=False):
            return sorted(dispatch_due())

    return run


def states(ids):
    return list(OutboundMessage.objects.filter(pk__in=ids).order_by("pk").values_list("state"))


def assert_one_email_each(smtp_server, leads):
    """Every lead got exactly one email, each with a Message-ID of its own."""
    emails = smtp_server.handler.wait_for(len(leads))
    assert sorted(e.rcpt_tos[0] for e in emails) == sorted(lead.email for lead in leads)
    assert len({e["Message-ID"] for e in emails}) == len(leads)


def test_a_batch_is_sent_over_one_connection_and_recorded_for_each_lead(
    nurtured_leads, dispatched, smtp_server, alice
):
    leads = nurtured_leads(5)
    ids = dispatched()

    assert sending.send_messages(ids) == dict.fromkeys(ids, "sent")

    assert_one_email_each(smtp_server, leads)
    assert smtp_server.handler.connections == 1
    assert states(ids) == [(State.SENT,)] * 5
    assert sorted(Notification.objects.filter(user=alice).values_list("message", flat=True)) == [
        f"Email 1 of 6 sent to Client{n} Petrov." for n in range(5)
    ]
    sent_entries = Activity.objects.filter(kind=Activity.Kind.EMAIL_OUT)
    assert sorted(sent_entries.values_list("lead_id", "payload__message")) == sorted(
        (m.enrollment.lead_id, m.pk) for m in OutboundMessage.objects.filter(pk__in=ids)
    )


def test_a_batch_costs_the_same_few_queries_whatever_its_size(
    nurtured_leads, dispatched, smtp_server
):
    nurtured_leads(12)
    ids = dispatched()
    sending.send_messages(ids[:2])  # warms the connection and anything cached per process

    with CaptureQueriesContext(connection) as two:
        assert set(sending.send_messages(ids[2:4]).values()) == {"sent"}
    with CaptureQueriesContext(connection) as eight:
        assert set(sending.send_messages(ids[4:]).values()) == {"sent"}

    assert len(eight) == len(two)


def test_each_message_of_a_batch_gets_its_own_outcome(
    nurtured_leads, dispatched, smtp_server, alice
):
    left, unsubscribed, sent_before, fine = nurtured_leads(4)
    ids = dispatched()
    by_lead = {
        m.enrollment.lead_id: m.pk
        for m in OutboundMessage.objects.filter(pk__in=ids).select_related("enrollment")
    }
    assert sending.send_message(by_lead[sent_before.pk]) == "sent"
    crm_services.change_status(left, "in_progress", by=alice)  # its receiver has not run yet
    unsubscribed.do_not_email = True
    unsubscribed.save()
    missing = max(ids) + 1000

    outcomes = sending.send_messages([*ids, missing])

    assert outcomes == {
        by_lead[left.pk]: "cancelled",
        by_lead[unsubscribed.pk]: "cancelled",
        by_lead[sent_before.pk]: "already sent",
        by_lead[fine.pk]: "sent",
        missing: "missing",
    }
    assert [e.rcpt_tos for e in smtp_server.handler.wait_for(2)] == [
        [sent_before.email],
        [fine.email],
    ]


def test_when_the_mail_server_goes_away_the_rest_of_the_batch_waits_for_a_retry(
    nurtured_leads, dispatched, smtp_server
):
    nurtured_leads(4)
    ids = dispatched()
    smtp_server.handler.reply_to_data = ["421 4.3.2 Shutting down"]

    outcomes = sending.send_messages(ids)

    assert outcomes == dict.fromkeys(ids, "retry")
    assert smtp_server.handler.connections == 1  # the others were not even tried
    assert smtp_server.received == []
    retry_at = FIRST_SEND + timedelta(minutes=1)
    assert set(
        OutboundMessage.objects.filter(pk__in=ids).values_list("state", "retry_at", "error")
    ) == {(State.RETRY, retry_at, "421 b'4.3.2 Shutting down'")}


def test_a_refused_recipient_fails_alone_and_the_rest_of_the_batch_goes(
    nurtured_leads, dispatched, smtp_server
):
    leads = nurtured_leads(3)
    ids = dispatched()
    smtp_server.handler.refuse_recipients = {leads[1].email}

    outcomes = sending.send_messages(ids)

    assert sorted(outcomes.values()) == ["failed", "sent", "sent"]
    assert len(smtp_server.handler.wait_for(2)) == 2
    assert leads[1].enrollments.get().halt_reason == Enrollment.HaltReason.BOUNCE


def test_an_unexpected_error_keeps_that_message_for_the_reconciler_and_sends_the_rest(
    nurtured_leads, dispatched, smtp_server, settings, clock
):
    leads = nurtured_leads(3)
    Lead.objects.filter(pk=leads[1].pk).update(email=EXPLODING_ADDRESS)
    ids = dispatched()
    settings.EMAIL_BACKEND = "tests.email_backends.ExplodingBackend"
    transport.connections.reset()

    outcomes = sending.send_messages(ids)

    assert outcomes == {ids[0]: "sent", ids[1]: "error", ids[2]: "sent"}
    assert states(ids) == [(State.SENT,), (State.SENDING,), (State.SENT,)]
    clock.move_to(FIRST_SEND + timedelta(seconds=settings.NURTURE_SEND_LEASE_SECONDS + 1))
    assert outbox.reconcile_expired_leases() == 1
    assert states(ids)[1] == (State.UNKNOWN,)


def test_a_long_batch_lets_go_of_its_locks_between_deliveries(
    nurtured_leads, dispatched, smtp_server, monkeypatch
):
    nurtured_leads(3)
    ids = dispatched()
    monkeypatch.setattr(sending, "DELIVERY_SECONDS", 0)  # one send per transaction
    deliveries = []
    deliver = sending._deliver

    def counted(messages):
        deliveries.append([message.pk for message in messages])
        return deliver(messages)

    monkeypatch.setattr(sending, "_deliver", counted)

    assert sending.send_messages(ids) == dict.fromkeys(ids, "sent")
    assert deliveries == [ids, ids[1:], ids[2:]]


def test_the_sixth_emails_of_a_batch_complete_their_enrollments_together(
    nurtured_leads, dispatched, smtp_server, alice
):
    leads = nurtured_leads(2)
    ids = dispatched()
    OutboundMessage.objects.filter(pk__in=ids).update(number=6)
    Enrollment.objects.update(sent_count=6, next_send_at=None)

    assert sending.send_messages(ids) == dict.fromkeys(ids, "sent")

    assert set(Enrollment.objects.values_list("state", flat=True)) == {Enrollment.State.COMPLETED}
    never_answered = Notification.objects.filter(message__contains="never answered")
    assert sorted(never_answered.values_list("lead_id", flat=True)) == [lead.pk for lead in leads]
    completed = Activity.objects.filter(summary="Nurturing completed without an answer")
    assert completed.count() == 2


def test_dispatched_messages_go_to_the_workers_in_batches_of_the_configured_size(
    nurtured_leads, clock, smtp_server, settings, eager_tasks, django_capture_on_commit_callbacks
):
    nurtured_leads(5)
    settings.NURTURE_SEND_BATCH = 2
    batches = []

    def on_postrun(sender=None, args=None, retval=None, **kwargs):
        batches.append((sender.name, list(args[0]), retval))

    signals.task_postrun.connect(on_postrun, weak=False)
    try:
        clock.move_to(FIRST_SEND)
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.dispatch_due() == 5
    finally:
        signals.task_postrun.disconnect(on_postrun)

    ids = sorted(OutboundMessage.objects.values_list("pk", flat=True))
    assert [(name, chunk) for name, chunk, _ in batches] == [
        ("nurture.tasks.send_messages", ids[0:2]),
        ("nurture.tasks.send_messages", ids[2:4]),
        ("nurture.tasks.send_messages", ids[4:5]),
    ]
    assert [retval for _, _, retval in batches] == [
        dict.fromkeys(ids[0:2], "sent"),
        dict.fromkeys(ids[2:4], "sent"),
        dict.fromkeys(ids[4:5], "sent"),
    ]
    assert len(smtp_server.handler.wait_for(5)) == 5


@pytest.mark.parametrize("width", [2, 3])
def test_a_batch_over_several_connections_sends_each_email_once(
    nurtured_leads, dispatched, smtp_server, settings, width
):
    settings.NURTURE_SEND_CONNECTIONS = width
    leads = nurtured_leads(9)
    ids = dispatched()

    assert sending.send_messages(ids) == dict.fromkeys(ids, "sent")

    assert_one_email_each(smtp_server, leads)
    # Each sending thread opened its own connection to this test's server (a thread's
    # connection from an earlier test is replaced), and kept it from send to send.
    assert smtp_server.handler.connections <= width
    assert states(ids) == [(State.SENT,)] * 9


def test_when_the_server_goes_away_under_several_connections_nothing_is_sent_twice_or_lost(
    nurtured_leads, dispatched, smtp_server, settings
):
    settings.NURTURE_SEND_CONNECTIONS = 3
    nurtured_leads(9)
    ids = dispatched()
    smtp_server.handler.reply_to_data = ["421 4.3.2 Shutting down"]

    outcomes = sending.send_messages(ids)

    rows = dict(OutboundMessage.objects.filter(pk__in=ids).values_list("pk", "state"))
    received = {e["Message-ID"] for e in smtp_server.received}
    message_ids = dict(OutboundMessage.objects.filter(pk__in=ids).values_list("pk", "message_id"))
    assert "retry" in outcomes.values()
    for pk in ids:
        assert outcomes[pk] in {"sent", "retry"}
        assert rows[pk] == outcomes[pk]
        assert (message_ids[pk] in received) == (outcomes[pk] == "sent")
    assert len(smtp_server.received) == list(outcomes.values()).count("sent")


def test_a_message_twice_in_one_batch_is_sent_once(nurtured_leads, dispatched, smtp_server):
    nurtured_leads(2)
    first, second = dispatched()

    assert sending.send_messages([first, second, first]) == {first: "sent", second: "sent"}
    assert len(smtp_server.handler.wait_for(2)) == 2
    assert len(smtp_server.received) == 2


def test_a_single_message_task_from_before_batches_is_still_carried_out(
    nurtured_leads, dispatched, smtp_server
):
    from nurture import tasks

    nurtured_leads(1)
    [message_id] = dispatched()

    assert tasks.send_message.apply(args=(message_id,)).get() == "sent"
    assert len(smtp_server.handler.wait_for(1)) == 1
