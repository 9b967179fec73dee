"""Incoming mail posted by ESPs to their inbound webhooks (Anymail's, behind ours), over real
HTTP."""

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from nurture import tasks as nurture_tasks
from nurture import transport
from nurture.dispatch import dispatch_due
from telephony.models import InboundEmail, RejectedPayload
from tests.smtp_server import SMTPServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SAMPLES = Path(__file__).parent / "mail_samples"
SAMPLE_MESSAGE_ID = "<176414040012.48213.9817263541238745623@crm.localhost>"
SECRET = "anymail:s3cret"
MAILGUN_KEY = "mailgun-webhook-signing-key"


@pytest.fixture
def sent_email(nurtured_lead, settings):
    """The lead's first nurture email, dispatched and sent over SMTP; as the lead received it."""
    from crm.celery import app

    with SMTPServer() as smtp:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        transport.connections.reset()
        app.conf.task_always_eager = True  # the send runs as the dispatch commits
        try:
            due = nurtured_lead.enrollments.get().next_send_at
            # Sent when it is due (inside the sending window), not at whatever hour the test runs.
            travel = time_machine.travel(due, tick=False)
            travel.start()
            nurture_tasks.publish_sends(dispatch_due(now=due))
            [received] = smtp.handler.wait_for(1)
        finally:
            travel.stop()
            app.conf.task_always_eager = False
            transport.connections.reset()
    return received.message


@pytest.fixture
def anymail_settings(settings):
    """Postmark's and Mailgun's webhooks mounted, with the basic-auth secret and Mailgun's
    signing key."""
    settings.ANYMAIL_WEBHOOK_ESPS = ["postmark", "mailgun"]
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}


def auth(secret=SECRET) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


def post(url, body: bytes, headers: dict):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def reply_to(email, text="Yes, let's go ahead. Call me tomorrow.") -> EmailMessage:
    reply = EmailMessage()
    reply["From"] = email["To"]
    reply["To"] = email["From"]
    reply["Subject"] = f"Re: {email['Subject']}"
    reply["Date"] = format_datetime(timezone.now())
    reply["Message-ID"] = make_msgid(domain="client.example")
    reply["In-Reply-To"] = email["Message-ID"]
    reply["References"] = email["Message-ID"]
    reply.set_content(f"{text}\n\nOn Wed, Alice wrote:\n> {email['Subject']}\n")
    return reply


def state_of(lead):
    lead.refresh_from_db()
    enrollment = lead.enrollments.get()
    return lead.status.code, enrollment.state, enrollment.halt_reason


# --- Postmark: parsed JSON ------------------------------------------------------------------


def postmark_inbound(reply: EmailMessage) -> dict:
    """The reply as Postmark's inbound webhook documents it (parsed, without RawEmail)."""
    sender, recipient = reply["From"].addresses[0], reply["To"].addresses[0]
    text = reply.get_content()
    return {
        "FromName": sender.display_name,
        "MessageStream": "inbound",
        "From": sender.addr_spec,
        "FromFull": {"Email": sender.addr_spec, "Name": sender.display_name, "MailboxHash": ""},
        "To": str(reply["To"]),
        "ToFull": [
            {"Email": recipient.addr_spec, "Name": recipient.display_name, "MailboxHash": ""}
        ],
        "Cc": "",
        "CcFull": [],
        "Bcc": "",
        "BccFull": [],
        "OriginalRecipient": recipient.addr_spec,
        "Subject": str(reply["Subject"]),
        "MessageID": str(uuid.uuid4()),
        "ReplyTo": "",
        "MailboxHash": "",
        "Date": str(reply["Date"]),
        "TextBody": text,
        "HtmlBody": "",
        "StrippedTextReply": text.split("\n\nOn ")[0],
        "Tag": "",
        "Headers": [
            {"Name": "Return-Path", "Value": f"<{sender.addr_spec}>"},
            {"Name": "X-Spam-Checker-Version", "Value": "SpamAssassin 3.4.6 on p-pm-inbound01"},
            {"Name": "X-Spam-Status", "Value": "No"},
            {"Name": "X-Spam-Score", "Value": "-0.1"},
            {"Name": "MIME-Version", "Value": "1.0"},
            {"Name": "Message-ID", "Value": str(reply["Message-ID"])},
            {"Name": "In-Reply-To", "Value": str(reply["In-Reply-To"])},
            {"Name": "References", "Value": str(reply["References"])},
        ],
        "Attachments": [],
    }


def test_a_postmark_inbound_reply_to_a_sent_email_stops_nurturing(
    sent_email, nurtured_lead, live_server, anymail_settings
):
    body = json.dumps(postmark_inbound(reply_to(sent_email))).encode()

    status = post(
        f"{live_server.url}/anymail/postmark/inbound/",
        body,
        {"Content-Type": "application/json", **auth()},
    )

    assert status == 200
    inbound = InboundEmail.objects.get()
    assert (inbound.source, inbound.kind, inbound.matched_by) == (
        "anymail:Postmark",
        "reply",
        "thread",
    )
    assert inbound.lead == nurtured_lead
    assert state_of(nurtured_lead) == ("in_progress", "halted", "reply")
    entry = nurtured_lead.activities.get(kind="email_in")
    assert entry.payload["excerpt"] == "Yes, let's go ahead. Call me tomorrow."


def test_a_webhook_with_a_wrong_secret_is_refused_and_nothing_is_stored(
    sent_email, nurtured_lead, live_server, anymail_settings
):
    body = json.dumps(postmark_inbound(reply_to(sent_email))).encode()

    status = post(
        f"{live_server.url}/anymail/postmark/inbound/",
        body,
        {"Content-Type": "application/json", **auth("anymail:guess")},
    )

    assert status == 403
    assert not InboundEmail.objects.exists()
    assert not RejectedPayload.objects.exists()
    assert state_of(nurtured_lead) == ("nurturing", "active", "")


def test_the_same_inbound_post_twice_counts_once(
    sent_email, nurtured_lead, alice, live_server, anymail_settings
):
    body = json.dumps(postmark_inbound(reply_to(sent_email))).encode()
    url = f"{live_server.url}/anymail/postmark/inbound/"

    statuses = [post(url, body, {"Content-Type": "application/json", **auth()}) for _ in "12"]

    assert statuses == [200, 200]
    assert InboundEmail.objects.count() == 1
    assert nurtured_lead.activities.filter(kind="email_in").count() == 1
    assert alice.notifications.filter(message__contains="wrote back").count() == 1


# A delivery report without the boundary its parts need: reading it fails.
BROKEN_DELIVERY_REPORT = (
    "From: Mail Delivery System <MAILER-DAEMON@mx.client.example>\r\n"
    "To: alice@crm.example\r\n"
    "Subject: Poison\r\n"
    "Message-ID: <broken-report-1@mx.client.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status\r\n"
    "\r\n"
    "This report has lost its parts.\r\n"
)


def postmark_raw_inbound(raw: str) -> dict:
    """A message as Postmark's inbound webhook posts it with the raw email included (Anymail
    then reads the message from RawEmail alone)."""
    return {
        "From": "MAILER-DAEMON@mx.client.example",
        "FromFull": {"Email": "MAILER-DAEMON@mx.client.example", "Name": "Mail Delivery System"},
        "OriginalRecipient": "alice@crm.example",
        "Subject": "Poison",
        "MessageID": str(uuid.uuid4()),
        "Headers": [{"Name": "Return-Path", "Value": "<>"}],
        "RawEmail": raw,
    }


def test_a_message_that_cannot_be_handled_is_kept_and_answered_400(live_server, anymail_settings):
    body = json.dumps(postmark_raw_inbound(BROKEN_DELIVERY_REPORT)).encode()

    status = post(
        f"{live_server.url}/anymail/postmark/inbound/",
        body,
        {"Content-Type": "application/json", **auth()},
    )

    assert status == 400
    rejected = RejectedPayload.objects.get()
    assert rejected.source == "anymail:postmark:inbound" and rejected.error
    assert "Subject: Poison" in rejected.body
    assert not InboundEmail.objects.exists()

    # Postmark retries a message answered 400: it is counted again, not kept again.
    again = post(
        f"{live_server.url}/anymail/postmark/inbound/",
        body,
        {"Content-Type": "application/json", **auth()},
    )
    assert again == 400
    assert RejectedPayload.objects.values_list("times", flat=True).get() == 2


# --- Mailgun: raw MIME, signed --------------------------------------------------------------


def multipart_form(fields: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + (value if isinstance(value, bytes) else str(value).encode())
        + b"\r\n"
        for name, value in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def mailgun_forward(raw: bytes, *, key=MAILGUN_KEY) -> tuple[bytes, str]:
    """A message as a Mailgun route with forward() posts it to a ".../inbound_mime/" URL."""
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return multipart_form(
        {
            "recipient": "alice@crm.example",
            "sender": "ivan@client.example",
            "from": "Ivan Petrov <ivan@client.example>",
            "subject": "Re: ...",
            "body-mime": raw,
            "timestamp": timestamp,
            "token": token,
            "signature": signature,
        }
    )


def test_a_mailgun_raw_mime_reply_to_a_sent_email_stops_nurturing(
    sent_email, nurtured_lead, live_server, anymail_settings
):
    body, content_type = mailgun_forward(reply_to(sent_email).as_bytes())

    status = post(
        f"{live_server.url}/anymail/mailgun/inbound_mime/",
        body,
        {"Content-Type": content_type, **auth()},
    )

    assert status == 200
    inbound = InboundEmail.objects.get()
    assert (inbound.source, inbound.matched_by, inbound.lead) == (
        "anymail:Mailgun",
        "thread",
        nurtured_lead,
    )
    assert state_of(nurtured_lead) == ("in_progress", "halted", "reply")


def test_a_bounce_forwarded_by_mailgun_marks_the_address_and_stops_nurturing(
    sent_email, nurtured_lead, live_server, anymail_settings
):
    raw = (SAMPLES / "postfix_bounce.eml").read_bytes()
    raw = raw.replace(SAMPLE_MESSAGE_ID.encode(), sent_email["Message-ID"].encode())
    body, content_type = mailgun_forward(raw)

    status = post(
        f"{live_server.url}/anymail/mailgun/inbound_mime/",
        body,
        {"Content-Type": content_type, **auth()},
    )

    assert status == 200
    assert InboundEmail.objects.get().kind == "bounce"
    assert state_of(nurtured_lead) == ("nurturing", "halted", "bounce")
    assert nurtured_lead.email_status == "bounced"


def test_a_mailgun_post_with_a_forged_signature_is_refused(
    sent_email, nurtured_lead, live_server, anymail_settings
):
    body, content_type = mailgun_forward(reply_to(sent_email).as_bytes(), key="not-the-key")

    status = post(
        f"{live_server.url}/anymail/mailgun/inbound_mime/",
        body,
        {"Content-Type": content_type, **auth()},
    )

    assert status == 403
    assert not InboundEmail.objects.exists()
    assert not RejectedPayload.objects.exists()
    assert state_of(nurtured_lead) == ("nurturing", "active", "")
