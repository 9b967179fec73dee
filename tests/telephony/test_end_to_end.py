"""A nurtured lead gets two emails, then calls or writes back: nurturing stops for good.

Every part is real: the database, the SMTP conversation, the HTTP webhook, the AMI connection,
the IMAP server. Only the clock is moved.
"""

import json
import urllib.request
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from crm.models import Activity, LeadStatus, Notification
from nurture import tasks as nurture_tasks
from nurture.models import Enrollment
from telephony.calls.ami import listener
from telephony.calls.signatures import sign
from tests.dovecot import dovecot_server  # noqa: F401 - the `dovecot` fixture
from tests.telephony.conftest import call_event, webhook_json
from tests.telephony.fake_ami import FakeAMI, Session, transcript

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

MSK = ZoneInfo("Europe/Moscow")
ENROLLED = datetime(2025, 11, 20, 19, 30, tzinfo=MSK)  # Thursday evening
FIRST_SEND = datetime(2025, 11, 26, 10, 0, tzinfo=MSK)
SECOND_SEND = datetime(2025, 12, 1, 10, 0, tzinfo=MSK)
CONTACT = datetime(2025, 12, 2, 12, 0, tzinfo=MSK)  # the day after the second email


@pytest.fixture
def clock_start():
    """The lead is moved to nurturing on Thursday evening."""
    return ENROLLED


@pytest.fixture
def two_emails_sent(clock, smtp_server, eager_tasks, calling_lead):
    """Alice's lead with a phone, nurtured since Thursday, has had the first two emails."""
    lead = calling_lead
    for moment in (FIRST_SEND, SECOND_SEND):
        clock.move_to(moment)
        nurture_tasks.dispatch_due()  # as beat does; the sends run as each batch commits
    emails = smtp_server.handler.wait_for(2)
    clock.move_to(CONTACT)
    return lead, emails


def assert_nurturing_stopped_for_good(lead, reason, kind, notice, clock, smtp_server, alice):
    lead.refresh_from_db()
    assert lead.status.code == LeadStatus.IN_PROGRESS
    enrollment = lead.enrollments.get()
    assert (enrollment.state, enrollment.halt_reason) == (Enrollment.State.HALTED, reason)
    assert lead.activities.filter(kind=kind).exists()
    assert Notification.objects.filter(user=alice, lead=lead, message__contains=notice).exists()

    clock.move_to(CONTACT + timedelta(days=31))
    assert nurture_tasks.dispatch_due() == 0
    assert len(smtp_server.received) == 2


def test_a_call_through_the_webhook_stops_nurturing(
    two_emails_sent, live_server, settings, clock, smtp_server, alice
):
    lead, _ = two_emails_sent
    settings.TELEPHONY_WEBHOOK_SECRETS = ["pbx-secret"]
    for offset, type in enumerate(["call.ringing", "call.answered", "call.ended"]):
        body = json.dumps(webhook_json(call_event(type, at=CONTACT, seconds=offset * 30))).encode()
        timestamp = str(int(CONTACT.timestamp()))
        request = urllib.request.Request(
            f"{live_server.url}/telephony/events/",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Timestamp": timestamp,
                "X-Signature": sign("pbx-secret", timestamp, body),
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert response.status == 200

    assert_nurturing_stopped_for_good(
        lead, Enrollment.HaltReason.CALL, Activity.Kind.CALL, "called", clock, smtp_server, alice
    )


def test_a_call_seen_by_the_asterisk_listener_stops_nurturing(
    two_emails_sent, settings, monkeypatch, clock, smtp_server, alice
):
    lead, _ = two_emails_sent
    events = transcript("inbound_answered.txt")  # 8 916 123-45-67 calls, alice answers
    monkeypatch.setattr(listener, "BACKOFF_INITIAL", 0.01)
    with FakeAMI(sessions=[Session(events)]) as pbx:
        settings.TELEPHONY_AMI_HOST, settings.TELEPHONY_AMI_PORT = "127.0.0.1", pbx.port
        settings.TELEPHONY_AMI_USERNAME, settings.TELEPHONY_AMI_SECRET = "crm", "s3cret"
        call_command("ami_listen", "--max-events", str(len(events)), "--max-seconds", "10")

    assert_nurturing_stopped_for_good(
        lead, Enrollment.HaltReason.CALL, Activity.Kind.CALL, "called", clock, smtp_server, alice
    )


def test_a_reply_by_email_fetched_over_imap_stops_nurturing(
    two_emails_sent, dovecot, settings, clock, smtp_server, alice
):
    lead, emails = two_emails_sent
    second = emails[1]
    reply = EmailMessage()
    reply["From"] = "Ivan Petrov <ivan@client.example>"
    reply["To"] = second["From"]
    reply["Subject"] = f"Re: {second['Subject']}"
    reply["Message-ID"] = make_msgid(domain="client.example")
    reply["In-Reply-To"] = reply["References"] = second["Message-ID"]
    reply.set_content("Да, решение принято: давайте созвонимся.\n")
    dovecot.append(reply)
    settings.MAIL_IMAP_HOST, settings.MAIL_IMAP_PORT = dovecot.host, dovecot.port
    settings.MAIL_IMAP_SSL = False
    settings.MAIL_IMAP_USER, settings.MAIL_IMAP_PASSWORD = dovecot.username, dovecot.password

    call_command("fetch_mail", "--backfill-days", "-1")

    assert_nurturing_stopped_for_good(
        lead,
        Enrollment.HaltReason.REPLY,
        Activity.Kind.EMAIL_IN,
        "wrote back",
        clock,
        smtp_server,
        alice,
    )
