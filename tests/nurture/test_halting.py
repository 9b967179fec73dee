import base64
import json
import urllib.error
import urllib.request
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from crm import services as crm_services
from crm.models import Lead, Notification, StatusChangeCause
from nurture import delivery_events, rendering, sending, services
from nurture.dispatch import dispatch_due
from nurture.models import Enrollment, OutboundMessage

MSK = ZoneInfo("Europe/Moscow")
FIRST_SEND = datetime(2025, 11, 26, 10, 0, tzinfo=MSK)


@pytest.fixture
def sent_message(clock, nurtured_lead, smtp_server, django_capture_on_commit_callbacks):
    """The first email of the lead's nurturing, really sent."""
    clock.move_to(FIRST_SEND)
    with django_capture_on_commit_callbacks(execute=False):
        [message_id] = dispatch_due()
    sending.send_message(message_id)
    return OutboundMessage.objects.get(pk=message_id)


def post(url, body: bytes, headers: dict):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_leaving_nurturing_halts_the_enrollment(
    nurtured_lead, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(nurtured_lead, "converted", by=alice)

    enrollment = nurtured_lead.enrollments.get()
    assert enrollment.state == Enrollment.State.HALTED
    assert enrollment.halt_reason == Enrollment.HaltReason.STATUS_CHANGE
    assert enrollment.next_send_at is None


@pytest.mark.parametrize(
    ("cause", "halt_reason"),
    [
        (StatusChangeCause.CALL, Enrollment.HaltReason.CALL),
        (StatusChangeCause.REPLY, Enrollment.HaltReason.REPLY),
        (StatusChangeCause.PERSON, Enrollment.HaltReason.STATUS_CHANGE),
    ],
)
def test_a_status_change_caused_by_a_reply_or_call_halts_with_that_reason(
    nurtured_lead, alice, django_capture_on_commit_callbacks, cause, halt_reason
):
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(nurtured_lead, "in_progress", cause=cause)

    assert nurtured_lead.enrollments.get().halt_reason == halt_reason


@pytest.mark.parametrize("words", ["call", "reply", "bounce", "unsubscribe"])
def test_a_person_typing_a_halt_code_as_the_reason_is_still_a_status_change(
    nurtured_lead, alice, django_capture_on_commit_callbacks, words
):
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(nurtured_lead, "in_progress", by=alice, reason=words)

    enrollment = nurtured_lead.enrollments.get()
    assert enrollment.halt_reason == Enrollment.HaltReason.STATUS_CHANGE
    change = nurtured_lead.activities.filter(kind="status_change").first()
    assert (change.payload["cause"], change.payload["reason"]) == ("person", words)


def test_returning_to_nurturing_starts_afresh_from_the_first_email(
    sent_message, nurtured_lead, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(nurtured_lead, "in_progress", by=alice)
        crm_services.change_status(nurtured_lead, "nurturing", by=alice)

    old, new = nurtured_lead.enrollments.order_by("pk")
    assert old.state == Enrollment.State.HALTED
    assert (new.state, new.sent_count) == (Enrollment.State.ACTIVE, 0)
    assert new.next_send_at == datetime(2025, 12, 1, 10, 0, tzinfo=MSK)  # Wed -> Mon 10:00


def test_a_halt_cancels_messages_not_yet_sent(
    clock, nurtured_lead, django_capture_on_commit_callbacks
):
    clock.move_to(FIRST_SEND)
    with django_capture_on_commit_callbacks(execute=False):
        [message_id] = dispatch_due()

    services.halt_for_lead(nurtured_lead.pk, Enrollment.HaltReason.MANUAL)

    assert OutboundMessage.objects.get(pk=message_id).state == OutboundMessage.State.CANCELLED
    assert sending.send_message(message_id) == "already cancelled"


def test_the_unsubscribe_link_asks_first_then_unsubscribes_without_login(
    sent_message, nurtured_lead, client
):
    url = f"/nurture/unsubscribe/{rendering.unsubscribe_token(sent_message.pk)}/"

    question = client.get(url)
    nurtured_lead.refresh_from_db()
    assert question.status_code == 200
    assert not nurtured_lead.do_not_email

    answer = client.post(url)
    nurtured_lead.refresh_from_db()
    assert answer.status_code == 200
    assert nurtured_lead.do_not_email
    assert nurtured_lead.email_status == Lead.EmailStatus.UNSUBSCRIBED
    enrollment = nurtured_lead.enrollments.get()
    assert enrollment.halt_reason == Enrollment.HaltReason.UNSUBSCRIBE


def test_a_forged_unsubscribe_link_is_refused(sent_message, client):
    token = rendering.unsubscribe_token(sent_message.pk)[:-2] + "xx"

    assert client.post(f"/nurture/unsubscribe/{token}/").status_code == 404


LIVE = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.mark.slow
@LIVE
def test_one_click_unsubscribe_over_http_as_rfc_8058_says(
    sent_message, nurtured_lead, smtp_server, live_server
):
    [email] = smtp_server.handler.wait_for(1)
    link = email["List-Unsubscribe"].strip().strip("<>")
    url = link.replace("http://127.0.0.1:8000", live_server.url)

    status, _ = post(
        url,
        b"List-Unsubscribe=One-Click",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )

    nurtured_lead.refresh_from_db()
    assert status == 200
    assert nurtured_lead.do_not_email
    assert nurtured_lead.enrollments.get().state == Enrollment.State.HALTED


@pytest.fixture
def webhook_secret(settings):
    settings.ANYMAIL_WEBHOOK_ESPS = ["postmark"]
    settings.ANYMAIL = {"WEBHOOK_SECRET": "anymail:s3cret"}
    return {"Authorization": "Basic " + base64.b64encode(b"anymail:s3cret").decode()}


def postmark_event(record_type, message, **fields):
    """A tracking event as Postmark documents it."""
    return {
        "RecordType": record_type,
        "ID": 4323372036854775807,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"outbound_message": str(message.pk)},
        "ServerID": 23,
        "Email": message.to_email,
        "From": "alice@crm.example",
        "BouncedAt": "2025-11-26T07:01:02.9070259Z",
        "MessageStream": "outbound",
        **fields,
    }


@pytest.mark.slow
@LIVE
@pytest.mark.parametrize(
    ("record_type", "fields", "email_status", "reason"),
    [
        ("Bounce", {"Type": "HardBounce", "TypeCode": 1}, "bounced", "bounce"),
        ("SpamComplaint", {"Type": "SpamComplaint", "TypeCode": 512}, "complained", "complaint"),
    ],
)
def test_a_bounce_or_complaint_webhook_halts_nurturing_and_marks_the_address(
    sent_message,
    nurtured_lead,
    live_server,
    webhook_secret,
    alice,
    record_type,
    fields,
    email_status,
    reason,
):
    body = json.dumps(postmark_event(record_type, sent_message, **fields)).encode()

    status, _ = post(
        f"{live_server.url}/anymail/postmark/tracking/",
        body,
        {"Content-Type": "application/json", **webhook_secret},
    )

    nurtured_lead.refresh_from_db()
    assert status == 200
    assert (nurtured_lead.do_not_email, nurtured_lead.email_status) == (True, email_status)
    enrollment = nurtured_lead.enrollments.get()
    assert (enrollment.state, enrollment.halt_reason) == (Enrollment.State.HALTED, reason)
    assert "stopped" in Notification.objects.filter(user=alice).latest("id").message


@pytest.mark.slow
@LIVE
def test_a_webhook_without_the_secret_changes_nothing(
    sent_message, nurtured_lead, live_server, webhook_secret
):
    body = json.dumps(postmark_event("Bounce", sent_message, Type="HardBounce")).encode()

    status, _ = post(
        f"{live_server.url}/anymail/postmark/tracking/", body, {"Content-Type": "application/json"}
    )

    nurtured_lead.refresh_from_db()
    assert status in (400, 401, 403)
    assert not nurtured_lead.do_not_email
    assert nurtured_lead.enrollments.get().state == Enrollment.State.ACTIVE


def test_a_bounce_for_an_unknown_message_is_matched_by_address(nurtured_lead):
    found = delivery_events.handle_delivery_event(
        "bounced",
        provider_message_id="not-ours",
        recipient="IVAN@client.example",
        metadata={},
        esp="sendgrid",
    )

    nurtured_lead.refresh_from_db()
    assert found
    assert nurtured_lead.email_status == Lead.EmailStatus.BOUNCED


def test_delivered_and_opened_events_change_nothing(nurtured_lead):
    for event_type in ("delivered", "opened", "clicked", "deferred"):
        delivery_events.handle_delivery_event(
            event_type, provider_message_id="", recipient=nurtured_lead.email, metadata={}, esp="x"
        )

    nurtured_lead.refresh_from_db()
    assert not nurtured_lead.do_not_email
