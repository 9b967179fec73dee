"""The ESP webhooks as an attacker finds them: closed without a secret, mounted only for the ESPs
the operator lists, and a bad body with valid auth a 400 kept once, never a 500 or a letter."""

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from django.core import checks

from telephony.mail.esp_webhooks import ENDPOINTS
from telephony.models import InboundEmail, RejectedPayload

SECRET = "anymail:s3cret"
MAILGUN_KEY = "mailgun-webhook-signing-key"
ENDPOINT_PATHS = sorted({endpoint.path for endpoint in ENDPOINTS})


@pytest.fixture
def no_secret(settings):
    """The default: no ANYMAIL_WEBHOOK_SECRET, no signing key."""
    settings.ANYMAIL = {}


@pytest.fixture
def with_secret(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": [SECRET]}


def mount(settings, *esps):
    settings.ANYMAIL_WEBHOOK_ESPS = list(esps)


def auth(secret=SECRET) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def post_json(client, path, data, **headers):
    body = data if isinstance(data, str) else json.dumps(data)
    return client.post(path, body, content_type="application/json", **headers)


def sendgrid_events(*leads) -> list:
    """An unsubscribe and a spam report, as SendGrid's event webhook posts them."""
    kinds = ["unsubscribe", "spamreport"]
    return [
        {
            "email": lead.email,
            "timestamp": 1764000000,
            "event": kind,
            "sg_event_id": uuid.uuid4().hex,
            "sg_message_id": f"{uuid.uuid4().hex}.filter0001",
        }
        for lead, kind in zip(leads, kinds, strict=True)
    ]


def postmark_reply(lead) -> dict:
    """A reply from the lead, as Postmark's inbound webhook documents it."""
    return {
        "From": lead.email,
        "FromFull": {"Email": lead.email, "Name": lead.first_name, "MailboxHash": ""},
        "To": "alice@crm.example",
        "ToFull": [{"Email": "alice@crm.example", "Name": "", "MailboxHash": ""}],
        "Subject": "Re: Shop",
        "MessageID": str(uuid.uuid4()),
        "Date": "Mon, 24 Nov 2025 12:00:00 +0300",
        "TextBody": "Stop sending me these, I have decided.",
        "Headers": [{"Name": "Message-ID", "Value": f"<{uuid.uuid4().hex}@client.example>"}],
        "Attachments": [],
    }


def emailable(lead) -> bool:
    lead.refresh_from_db()
    return not lead.do_not_email and not lead.email_status


def nurturing(lead) -> bool:
    lead.refresh_from_db()
    return lead.status.code == "nurturing" and lead.enrollments.get().state == "active"


# --- Closed without a secret ----------------------------------------------------------------


@pytest.mark.django_db
def test_an_unlisted_esp_answers_404_and_changes_nothing(client, settings, make_lead, alice):
    mount(settings, "postmark")
    settings.ANYMAIL = {"WEBHOOK_SECRET": [SECRET]}
    ivan = make_lead(alice, email="ivan@client.example")
    maria = make_lead(alice, email="maria@client.example", first_name="Maria")

    response = post_json(client, "/anymail/sendgrid/tracking/", sendgrid_events(ivan, maria))

    assert response.status_code == 404
    assert emailable(ivan) and emailable(maria)


@pytest.mark.django_db
def test_sendgrid_unsubscribe_and_spam_events_without_a_secret_are_refused(
    client, settings, no_secret, make_lead, alice
):
    mount(settings, "sendgrid")
    ivan = make_lead(alice, email="ivan@client.example")
    maria = make_lead(alice, email="maria@client.example", first_name="Maria")

    response = post_json(client, "/anymail/sendgrid/tracking/", sendgrid_events(ivan, maria))

    assert response.status_code == 403
    assert "not set up" in response.json()["error"]
    assert emailable(ivan) and emailable(maria)
    assert not RejectedPayload.objects.exists()


@pytest.mark.django_db
def test_a_forged_postmark_reply_without_a_secret_is_refused_and_nurturing_goes_on(
    client, settings, no_secret, nurtured_lead
):
    mount(settings, "postmark")

    response = post_json(client, "/anymail/postmark/inbound/", postmark_reply(nurtured_lead))

    assert response.status_code == 403
    assert not InboundEmail.objects.exists()
    assert not RejectedPayload.objects.exists()
    assert nurturing(nurtured_lead)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ENDPOINT_PATHS)
def test_no_endpoint_of_any_esp_answers_unless_listed(client, settings, with_secret, path, caplog):
    mount(settings)

    response = post_json(client, path, {})

    assert response.status_code == 404
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.path)
def test_every_listed_esp_without_its_secret_refuses_every_request(
    client, settings, no_secret, endpoint, caplog
):
    mount(settings, endpoint.esp)

    posted = post_json(client, endpoint.path, {"anything": "at all"})
    checked = client.head(endpoint.path)

    assert (posted.status_code, checked.status_code) == (403, 403)
    assert not RejectedPayload.objects.exists()
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]


# --- Authentication first -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_post_without_basic_auth_is_asked_for_it(client, settings, with_secret, nurtured_lead):
    mount(settings, "postmark")

    response = post_json(client, "/anymail/postmark/inbound/", postmark_reply(nurtured_lead))

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")
    assert not InboundEmail.objects.exists() and not RejectedPayload.objects.exists()
    assert nurturing(nurtured_lead)


@pytest.mark.django_db
def test_a_wrong_secret_with_a_bad_body_is_refused_not_kept(client, settings, with_secret):
    mount(settings, "postmark")

    response = post_json(client, "/anymail/postmark/inbound/", "{not json", **auth("x:y"))

    assert response.status_code == 403
    assert not RejectedPayload.objects.exists()


@pytest.mark.django_db
def test_the_esp_can_check_the_url_of_a_secured_webhook(client, settings, with_secret):
    mount(settings, "postmark")

    assert client.head("/anymail/postmark/tracking/").status_code == 200


def mailgun_signed(event_data: dict, key=MAILGUN_KEY) -> dict:
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


def mailgun_unsubscribe(lead) -> dict:
    return {
        "event": "unsubscribed",
        "id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "recipient": lead.email,
        "message": {"headers": {"message-id": "20251124.1@mg.crm.example"}},
    }


@pytest.mark.django_db
def test_an_esp_that_signs_needs_only_its_signing_key(client, settings, nurtured_lead):
    mount(settings, "mailgun")
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    event = mailgun_unsubscribe(nurtured_lead)

    forged = post_json(client, "/anymail/mailgun/tracking/", mailgun_signed(event, key="guess"))
    assert forged.status_code == 403
    assert emailable(nurtured_lead)

    signed = post_json(client, "/anymail/mailgun/tracking/", mailgun_signed(event))
    assert signed.status_code == 200
    nurtured_lead.refresh_from_db()
    assert (nurtured_lead.do_not_email, nurtured_lead.email_status) == (True, "unsubscribed")


@pytest.mark.django_db
def test_a_postmark_bounce_with_the_secret_marks_the_address(
    client, settings, with_secret, nurtured_lead
):
    mount(settings, "postmark")
    bounce = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": str(uuid.uuid4()),
        "Email": nurtured_lead.email,
        "BouncedAt": "2025-11-26T07:01:02Z",
    }

    response = post_json(client, "/anymail/postmark/tracking/", bounce, **auth())

    assert response.status_code == 200
    nurtured_lead.refresh_from_db()
    assert (nurtured_lead.do_not_email, nurtured_lead.email_status) == (True, "bounced")
    assert nurtured_lead.enrollments.get().halt_reason == "bounce"


# --- Bad bodies with valid auth: 400, kept once -------------------------------------------


BAD_BODIES = {
    "not JSON": ("postmark", "inbound", "{this is not json"),
    "a list for an object": ("postmark", "inbound", "[]"),
    "an empty letter": ("postmark", "inbound", "{}"),
    "a letter from nobody": ("postmark", "inbound", json.dumps({"Subject": "hi", "From": "x"})),
    "a tracking event as text": ("postmark", "tracking", json.dumps("Bounce")),
    "metadata that is not an object": (
        "postmark",
        "tracking",
        json.dumps({"RecordType": "Bounce", "Email": "ivan@client.example", "Metadata": "x"}),
    ),
    "a recipient that is a list": (
        "postmark",
        "tracking",
        json.dumps({"RecordType": "Bounce", "Email": ["ivan@client.example"]}),
    ),
    "one event instead of a list": (
        "sendgrid",
        "tracking",
        json.dumps({"event": "unsubscribe", "email": "ivan@client.example"}),
    ),
    "a tracking event at the inbound URL": (
        "mailgun",
        "inbound",
        json.dumps({"event-data": {"event": "failed"}}),
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("esp", "kind", "body"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_bad_body_with_valid_auth_is_answered_400_and_kept_once(
    client, settings, nurtured_lead, esp, kind, body
):
    mount(settings, esp)
    settings.ANYMAIL = {"WEBHOOK_SECRET": [SECRET], "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    if esp == "mailgun":  # signed too
        body = json.dumps({**json.loads(body), **mailgun_signed({})})
    path = f"/anymail/{esp}/{kind}/"

    first = post_json(client, path, body, **auth())
    again = post_json(client, path, body, **auth())

    assert (first.status_code, again.status_code) == (400, 400)
    assert first.json()["error"]
    rejected = RejectedPayload.objects.get()
    assert rejected.source == f"anymail:{esp}:{kind}"
    assert rejected.body == body and rejected.times == 2 and rejected.error
    assert "Authorization" not in rejected.headers
    assert not InboundEmail.objects.exists()
    assert emailable(nurtured_lead) and nurturing(nurtured_lead)


@pytest.mark.django_db
def test_a_form_post_that_cannot_be_used_keeps_its_fields(client, settings):
    """Mailgun's store() route (Anymail needs forward()): the form is read, not the raw body."""
    mount(settings, "mailgun")
    settings.ANYMAIL = {"WEBHOOK_SECRET": [SECRET], "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    form = {
        "recipient": "alice@crm.example",
        "attachments": "[]",
        **mailgun_signed({})["signature"],
    }

    response = client.post("/anymail/mailgun/inbound/", form, **auth())

    assert response.status_code == 400
    rejected = RejectedPayload.objects.get()
    assert rejected.source == "anymail:mailgun:inbound"
    assert "store()" in rejected.error
    assert json.loads(rejected.body)["fields"]["recipient"] == ["alice@crm.example"]


# --- What `manage.py check` says ------------------------------------------------------------


def telephony_messages():
    return [message for message in checks.run_checks() if message.id.startswith("telephony.")]


@pytest.mark.django_db
def test_check_is_quiet_when_no_esp_is_listed(settings, no_secret):
    mount(settings)

    assert telephony_messages() == []


@pytest.mark.django_db
def test_check_is_quiet_when_every_listed_esp_can_authenticate(settings):
    mount(settings, "postmark", "mailgun")
    settings.ANYMAIL = {"WEBHOOK_SECRET": [SECRET], "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}

    assert telephony_messages() == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("debug", "level", "code"), [(False, checks.ERROR, "E002"), (True, checks.WARNING, "W002")]
)
def test_check_names_the_missing_secret_of_a_listed_esp(settings, no_secret, debug, level, code):
    mount(settings, "postmark")
    settings.DEBUG = debug

    messages = telephony_messages()

    assert [(message.id, message.level) for message in messages] == [
        (f"telephony.{code}", level),
        (f"telephony.{code}", level),
    ]
    assert {"/anymail/postmark/inbound/", "/anymail/postmark/tracking/"} == {
        path for message in messages for path in ENDPOINT_PATHS if path in message.msg
    }
    assert all("ANYMAIL_WEBHOOK_SECRET" in message.msg for message in messages)


@pytest.mark.django_db
def test_check_names_a_missing_signing_key(settings, with_secret):
    mount(settings, "mailgun")

    messages = telephony_messages()

    assert {message.id for message in messages} == {"telephony.E002"}
    assert all("MAILGUN_WEBHOOK_SIGNING_KEY" in message.msg for message in messages)


@pytest.mark.django_db
def test_check_refuses_an_esp_anymail_does_not_know(settings, with_secret):
    mount(settings, "postmrk")

    [message] = telephony_messages()

    assert message.id == "telephony.E001"
    assert "postmark" in message.hint


@pytest.mark.django_db
def test_check_warns_of_a_secret_with_no_esp_listed(settings, with_secret):
    mount(settings)

    [message] = telephony_messages()

    assert (message.id, message.level) == ("telephony.W003", checks.WARNING)
