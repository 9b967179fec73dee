"""`manage.py fetch_mail` against a real IMAP server (Dovecot) on loopback."""

import logging
import threading
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from crm.models import Activity
from nurture import tasks as nurture_tasks
from nurture import transport
from nurture.dispatch import dispatch_due
from telephony.mail import imap
from telephony.models import InboundEmail, MailboxCursor, RejectedPayload
from tests.dovecot import dovecot_server  # noqa: F401 - the `dovecot` fixture
from tests.smtp_server import SMTPServer, free_port

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).parent / "mail_samples"
SAMPLE_MESSAGE_ID = "<176414040012.48213.9817263541238745623@crm.localhost>"


# --- A nurtured lead who has really been sent an email --------------------------------------


@pytest.fixture
def sent_email(nurtured_lead, settings, django_capture_on_commit_callbacks):
    """The lead's first nurture email, dispatched and sent over SMTP; as the lead received it."""
    from crm.celery import app

    with SMTPServer() as smtp:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        transport.connections.reset()
        app.conf.task_always_eager = True
        try:
            due = nurtured_lead.enrollments.get().next_send_at
            # Sent when it is due (inside the sending window), not at whatever hour the test runs.
            travel = time_machine.travel(due, tick=False)
            travel.start()
            with django_capture_on_commit_callbacks(execute=True):
                nurture_tasks.publish_sends(dispatch_due(now=due))
            [received] = smtp.handler.wait_for(1)
        finally:
            travel.stop()
            app.conf.task_always_eager = False
            transport.connections.reset()
    return received.message


def reply_to(email, text="Yes, let's go ahead. Call me tomorrow.", **headers) -> EmailMessage:
    """The lead's answer to `email`, as a mail program writes it."""
    reply = EmailMessage()
    reply["From"] = email["To"]
    reply["To"] = email["From"]
    reply["Subject"] = f"Re: {email['Subject']}"
    reply["Date"] = format_datetime(timezone.now())
    reply["Message-ID"] = make_msgid(domain="client.example")
    reply["In-Reply-To"] = email["Message-ID"]
    reply["References"] = email["Message-ID"]
    for name, value in headers.items():
        reply[name.replace("_", "-")] = value
    reply.set_content(f"{text}\n\nOn Wed, Alice wrote:\n> {email['Subject']}\n")
    return reply


def letter(subject="Hello", sender="someone@else.example") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "alice@crm.example", subject
    message["Message-ID"] = make_msgid(domain="else.example")
    message.set_content("Just writing.")
    return message


# A delivery report without the boundary its parts need: reading it fails.
BROKEN_DELIVERY_REPORT = (
    b"From: Mail Delivery System <MAILER-DAEMON@mx.client.example>\r\n"
    b"To: alice@crm.example\r\n"
    b"Subject: Poison\r\n"
    b"Message-ID: <broken-report-1@mx.client.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/report; report-type=delivery-status\r\n"
    b"\r\n"
    b"This report has lost its parts.\r\n"
)


def sample_answering(name: str, email) -> bytes:
    """A sample message, made to answer (or bounce) the email really sent."""
    return (
        (SAMPLES / name)
        .read_bytes()
        .replace(SAMPLE_MESSAGE_ID.encode(), email["Message-ID"].encode())
    )


# --- The mailbox --------------------------------------------------------------------------


@pytest.fixture
def mailbox(dovecot, settings):
    settings.MAIL_IMAP_HOST = dovecot.host
    settings.MAIL_IMAP_PORT = dovecot.port
    settings.MAIL_IMAP_SSL = False
    settings.MAIL_IMAP_USER = dovecot.username
    settings.MAIL_IMAP_PASSWORD = dovecot.password
    settings.MAIL_IMAP_FOLDER = "INBOX"
    return dovecot


@pytest.fixture
def fetch_mail(django_capture_on_commit_callbacks):
    """Run the command (and what runs after commit); return what it printed."""

    def run(*args):
        out = StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("fetch_mail", *args, stdout=out)
        return out.getvalue().strip()

    return run


def state_of(lead):
    lead.refresh_from_db()
    enrollment = lead.enrollments.get()
    return lead.status.code, enrollment.state, enrollment.halt_reason


# --- One pass -------------------------------------------------------------------------------


def test_a_reply_to_a_sent_nurture_email_stops_nurturing(
    sent_email, nurtured_lead, mailbox, fetch_mail
):
    mailbox.append(reply_to(sent_email))

    output = fetch_mail()

    assert output == "1 new message."
    inbound = InboundEmail.objects.get()
    assert (inbound.source, inbound.kind, inbound.matched_by) == ("imap", "reply", "thread")
    assert inbound.lead == nurtured_lead
    assert state_of(nurtured_lead) == ("in_progress", "halted", "reply")
    entry = nurtured_lead.activities.get(kind=Activity.Kind.EMAIL_IN)
    assert entry.payload["excerpt"] == "Yes, let's go ahead. Call me tomorrow."


def test_a_second_pass_fetches_nothing_new(sent_email, mailbox, fetch_mail):
    uids = [mailbox.append(reply_to(sent_email)), mailbox.append(letter())]

    first, second = fetch_mail("--once"), fetch_mail("--once")

    assert (first, second) == ("2 new messages.", "0 new messages.")
    cursor = MailboxCursor.objects.get()
    assert (cursor.host, cursor.username, cursor.folder) == ("127.0.0.1", "crm", "INBOX")
    assert cursor.last_uid == max(uids)
    assert cursor.uidvalidity and cursor.checked_at
    assert InboundEmail.objects.count() == 2


def test_fetched_mail_stays_unread(sent_email, mailbox, fetch_mail):
    uid = mailbox.append(reply_to(sent_email))

    fetch_mail()

    assert b"\\Seen" not in mailbox.flags()[uid]


def test_mail_arriving_after_a_pass_is_fetched_by_the_next(
    sent_email, nurtured_lead, mailbox, fetch_mail
):
    mailbox.append(letter("First"))
    fetch_mail()
    mailbox.append(reply_to(sent_email))

    output = fetch_mail()

    assert output == "1 new message."
    assert list(InboundEmail.objects.order_by("pk").values_list("subject", flat=True)) == [
        "First",
        f"Re: {sent_email['Subject']}",
    ]
    assert state_of(nurtured_lead) == ("in_progress", "halted", "reply")


def test_many_messages_are_fetched_in_batches(db, mailbox, fetch_mail):
    for number in range(7):
        mailbox.append(letter(f"Letter {number}"))

    output = fetch_mail("--batch-size", "3")

    assert output == "7 new messages."
    assert MailboxCursor.objects.get().last_uid == 7


def test_a_changed_uidvalidity_reads_the_folder_again(db, mailbox, settings, fetch_mail):
    settings.MAIL_IMAP_FOLDER = "CRM"
    known, new = letter("Already fetched"), letter("New")
    with mailbox.client() as client:
        client.create_folder("CRM")
    mailbox.append(known, "CRM")
    fetch_mail()
    old_uidvalidity = MailboxCursor.objects.get().uidvalidity
    # The folder is rebuilt on the server: its UIDs start afresh, the new letter gets UID 1.
    with mailbox.client() as client:
        client.delete_folder("CRM")
        client.create_folder("CRM")
    mailbox.append(new, "CRM")
    mailbox.append(known, "CRM")

    output = fetch_mail()

    cursor = MailboxCursor.objects.get()
    assert output == "1 new message."
    assert cursor.uidvalidity != old_uidvalidity
    assert cursor.last_uid == 2
    assert sorted(InboundEmail.objects.values_list("subject", flat=True)) == [
        "Already fetched",
        "New",
    ]


def test_an_automatic_reply_is_logged_but_does_not_stop_nurturing(
    sent_email, nurtured_lead, mailbox, fetch_mail
):
    mailbox.append(sample_answering("outlook_out_of_office.eml", sent_email))

    fetch_mail()

    inbound = InboundEmail.objects.get()
    assert (inbound.kind, inbound.lead) == ("auto_reply", nurtured_lead)
    assert nurtured_lead.activities.filter(kind=Activity.Kind.EMAIL_IN).count() == 1
    assert state_of(nurtured_lead) == ("nurturing", "active", "")


def test_a_bounce_marks_the_address_and_stops_nurturing_for_bounce(
    sent_email, nurtured_lead, mailbox, fetch_mail
):
    mailbox.append(sample_answering("postfix_bounce.eml", sent_email))

    fetch_mail()

    assert InboundEmail.objects.get().kind == "bounce"
    assert state_of(nurtured_lead) == ("nurturing", "halted", "bounce")
    assert (nurtured_lead.do_not_email, nurtured_lead.email_status) == (True, "bounced")


def test_mail_from_nobody_we_know_is_kept_unmatched(nurtured_lead, mailbox, fetch_mail):
    mailbox.append((SAMPLES / "stranger.eml").read_bytes())

    fetch_mail()

    inbound = InboundEmail.objects.get()
    assert (inbound.lead, inbound.matched_by) == (None, "")
    assert state_of(nurtured_lead) == ("nurturing", "active", "")


def test_the_first_pass_leaves_out_mail_older_than_the_backfill(db, mailbox, fetch_mail):
    with mailbox.client() as client:
        client.append(
            "INBOX", letter("Last year").as_bytes(), msg_time=timezone.now() - timedelta(days=365)
        )
    mailbox.append(letter("This week"))

    first, second = fetch_mail(), fetch_mail()

    assert (first, second) == ("1 new message.", "0 new messages.")
    assert list(InboundEmail.objects.values_list("subject", flat=True)) == ["This week"]


def test_a_message_that_cannot_be_handled_is_kept_aside_and_the_rest_go_on(db, mailbox, fetch_mail):
    mailbox.append(BROKEN_DELIVERY_REPORT)
    mailbox.append(letter("Fine"))

    output = fetch_mail()

    assert output == "1 new message."
    rejected = RejectedPayload.objects.get()
    assert rejected.source == "imap" and rejected.error
    assert "Subject: Poison" in rejected.body
    assert list(InboundEmail.objects.values_list("subject", flat=True)) == ["Fine"]
    assert MailboxCursor.objects.get().last_uid == 2


def test_a_huge_message_is_read_without_its_attachments(db, mailbox, fetch_mail, monkeypatch):
    monkeypatch.setattr(imap, "MAX_MESSAGE_BYTES", 50_000)
    big = letter("Drawings attached")
    big.add_attachment(b"\x00" * 200_000, maintype="application", subtype="pdf", filename="a.pdf")
    mailbox.append(big)

    fetch_mail()

    inbound = InboundEmail.objects.get()
    assert (inbound.subject, inbound.text) == ("Drawings attached", "Just writing.")


# --- Errors ---------------------------------------------------------------------------------


def test_without_settings_the_command_says_what_to_set(db, settings):
    settings.MAIL_IMAP_HOST = ""

    with pytest.raises(CommandError, match="MAIL_IMAP_HOST"):
        call_command("fetch_mail")


def test_an_unreachable_server_is_a_clear_error(db, settings):
    settings.MAIL_IMAP_HOST, settings.MAIL_IMAP_PORT = "127.0.0.1", free_port()
    settings.MAIL_IMAP_USER, settings.MAIL_IMAP_SSL = "crm", False

    with pytest.raises(CommandError, match="Cannot read crm@127.0.0.1"):
        call_command("fetch_mail")


def test_a_wrong_password_is_a_clear_error(db, mailbox, settings):
    settings.MAIL_IMAP_PASSWORD = "wrong"

    with pytest.raises(CommandError, match="Cannot read"):
        call_command("fetch_mail")


def test_max_seconds_goes_with_idle(db, mailbox):
    with pytest.raises(CommandError, match="--idle"):
        call_command("fetch_mail", "--max-seconds", "5")


# --- Waiting for mail (IDLE) ----------------------------------------------------------------


class Waiting(logging.Handler):
    """Notices when the command has started waiting for new mail."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.idling = threading.Event()

    def emit(self, record):
        if "IDLE" in record.getMessage():
            self.idling.set()


@pytest.fixture
def waiting(caplog):
    caplog.set_level(logging.DEBUG, logger="telephony.mail.imap")
    handler = Waiting()
    logger = logging.getLogger("telephony.mail.imap")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_idle_picks_up_a_reply_that_arrives_while_it_waits(
    sent_email, nurtured_lead, mailbox, fetch_mail, waiting
):
    appended = []

    def lead_replies_once_the_command_waits():
        if waiting.idling.wait(timeout=10):
            appended.append(mailbox.append(reply_to(sent_email)))

    replier = threading.Thread(target=lead_replies_once_the_command_waits)
    replier.start()
    try:
        output = fetch_mail("--idle", "--max-seconds", "5")
    finally:
        replier.join(timeout=15)

    assert appended, "the command never started waiting for mail"
    assert output == "1 new message."
    assert state_of(nurtured_lead) == ("in_progress", "halted", "reply")


def test_idle_keeps_trying_a_server_that_is_down_with_backoff(db, caplog):
    down = imap.Mailbox("127.0.0.1", free_port(), False, "crm", "x")

    with caplog.at_level(logging.WARNING, logger="telephony.mail.imap"):
        stored = imap.watch(down, max_seconds=1.5)

    attempts = [r for r in caplog.records if "trying again in" in r.getMessage()]
    assert stored == 0
    assert [r.getMessage().rsplit(" ", 2)[-2] for r in attempts] == ["1", "2"]


def test_watching_stops_when_asked(db, mailbox):
    stop = threading.Event()
    stop.set()

    assert imap.watch(imap.Mailbox.from_settings(), stop=stop) == 0
