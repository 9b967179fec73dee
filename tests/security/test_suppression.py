"""Attacks on the suppression list: every lead with an unsubscribed, bounced or complaining
address stops being emailed, and nothing but a supervisor with a reason lets it be emailed
again."""

import base64
import json
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from crm import services as crm_services
from crm.models import Activity, Notification
from nurture import sending
from nurture.dispatch import dispatch_due
from nurture.models import Enrollment, OutboundMessage, Suppression

MSK = ZoneInfo("Europe/Moscow")
FIRST_SEND = datetime(2025, 11, 26, 10, 0, tzinfo=MSK)  # nurtured_lead's first email
A_WEEK_LATER = FIRST_SEND + timedelta(days=7)  # anything enrolled at FIRST_SEND is due by then
IVAN = "ivan@client.example"


@pytest.fixture
def second_ivan(clock, nurtured_lead, make_lead, bob, django_capture_on_commit_callbacks):
    """Ivan again, as a lead of bob's: the same address, in nurturing too."""
    lead = make_lead(bob, first_name="Ivan", email=IVAN, title="Warehouse")
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(lead, "nurturing", by=bob)
    return lead


def send_first_email(clock, nurtured_lead, smtp_server, django_capture_on_commit_callbacks):
    """Alice's Ivan gets his first email, really sent; returns it as the SMTP server saw it."""
    clock.move_to(FIRST_SEND)
    with django_capture_on_commit_callbacks(execute=False):
        created = dispatch_due()
    mine = OutboundMessage.objects.get(pk__in=created, enrollment__lead=nurtured_lead)
    assert sending.send_message(mine.pk) == "sent"
    [email] = smtp_server.handler.wait_for(1)
    return email


@pytest.fixture
def first_email(clock, nurtured_lead, smtp_server, django_capture_on_commit_callbacks):
    return send_first_email(clock, nurtured_lead, smtp_server, django_capture_on_commit_callbacks)


def unsubscribe_path(email) -> str:
    """The path of the email's List-Unsubscribe link."""
    return urlsplit(email["List-Unsubscribe"].strip().strip("<>")).path


def one_click(client, path):
    """What a mail client sends for RFC 8058 one-click unsubscribe."""
    return client.post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )


def written():
    """What an attempt could have written."""
    return (
        Suppression.objects.count(),
        Activity.objects.count(),
        Notification.objects.count(),
        LogEntry.objects.count(),
    )


def dispatch_and_send(moment, clock, django_capture_on_commit_callbacks) -> list[str]:
    clock.move_to(moment)
    with django_capture_on_commit_callbacks(execute=False):
        created = dispatch_due()
    return [sending.send_message(pk) for pk in created]


# --- A second lead with the unsubscribed address ----------------------------------------------


def test_a_second_lead_with_an_unsubscribed_address_is_not_emailed(
    second_ivan,
    first_email,
    nurtured_lead,
    smtp_server,
    client,
    bob,
    clock,
    django_capture_on_commit_callbacks,
):
    answer = one_click(client, unsubscribe_path(first_email))

    assert answer.status_code == 200
    enrollment = second_ivan.enrollments.get()
    assert (enrollment.state, enrollment.halt_reason) == ("halted", "unsubscribe")
    bobs_message = OutboundMessage.objects.get(enrollment=enrollment)
    assert bobs_message.state == OutboundMessage.State.CANCELLED
    assert sending.send_message(bobs_message.pk) == "already cancelled"
    assert second_ivan.activities.filter(kind=Activity.Kind.NOTE).count() == 1
    assert Notification.objects.filter(user=bob, message__contains=IVAN).count() == 1
    assert dispatch_and_send(A_WEEK_LATER, clock, django_capture_on_commit_callbacks) == []
    assert len(smtp_server.received) == 1


def test_a_lead_created_later_with_an_unsubscribed_address_is_not_emailed(
    first_email, smtp_server, client, make_lead, bob, clock, django_capture_on_commit_callbacks
):
    one_click(client, unsubscribe_path(first_email))
    newcomer = make_lead(bob, first_name="Ivan", email="Ivan@Client.example", title="Later")
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(newcomer, "nurturing", by=bob)

    assert dispatch_and_send(A_WEEK_LATER, clock, django_capture_on_commit_callbacks) == []
    enrollment = newcomer.enrollments.get()
    assert (enrollment.state, enrollment.halt_reason) == ("halted", "unsubscribe")
    assert len(smtp_server.received) == 1


def test_a_lead_given_a_suppressed_address_after_its_email_was_dispatched_gets_nothing(
    first_email, smtp_server, client, make_lead, alice, clock, django_capture_on_commit_callbacks
):
    one_click(client, unsubscribe_path(first_email))
    other = make_lead(alice, first_name="Oleg", email="oleg@client.example", title="Depot")
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(other, "nurturing", by=alice)
    clock.move_to(A_WEEK_LATER)
    with django_capture_on_commit_callbacks(execute=False):
        [message_id] = dispatch_due()
    other.email = IVAN  # typed in by hand, do-not-email left unticked
    other.save()

    assert sending.send_message(message_id) == "cancelled"
    message = OutboundMessage.objects.get(pk=message_id)
    assert message.error == "address is on the suppression list"
    assert len(smtp_server.received) == 1


# --- Unticking do-not-email -------------------------------------------------------------------


@pytest.fixture
def lead_form(nurtured_lead, status):
    def form(**overrides):
        lead = nurtured_lead
        data = {
            "title": lead.title,
            "status": lead.status_id,
            "responsible": lead.responsible_id,
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "email": lead.email,
            "phone_raw": "",
            "company": "",
            "source": "",
            "language": lead.language,
            "time_zone": "",
            # "do_not_email" left out: the box unticked
        }
        return {**data, **{k: v for k, v in overrides.items() if v is not None}}

    return form


def test_a_manager_unticking_do_not_email_does_not_lift_the_suppression(
    first_email,
    nurtured_lead,
    smtp_server,
    client,
    alice,
    status,
    lead_form,
    clock,
    django_capture_on_commit_callbacks,
):
    assert one_click(client, unsubscribe_path(first_email)).status_code == 200
    client.force_login(alice)
    page = reverse("admin:crm_lead_change", args=[nurtured_lead.pk])

    # Alice unticks the box, moves Ivan away from Nurturing and back: a fresh enrollment.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(page, lead_form(status=status("in_progress").pk)).status_code == 302
        assert client.post(page, lead_form(status=status("nurturing").pk)).status_code == 302

    nurtured_lead.refresh_from_db()
    assert not nurtured_lead.do_not_email
    assert Suppression.objects.active().filter(address=IVAN).exists()
    assert dispatch_and_send(A_WEEK_LATER, clock, django_capture_on_commit_callbacks) == []
    fresh = nurtured_lead.enrollments.latest("enrolled_at")
    assert (fresh.state, fresh.halt_reason) == ("halted", "unsubscribe")
    assert len(smtp_server.received) == 1


# --- A manager trying to lift -----------------------------------------------------------------


@pytest.fixture
def suppression(first_email, client):
    one_click(client, unsubscribe_path(first_email))
    return Suppression.objects.get(address=IVAN)


def test_a_manager_cannot_lift_a_suppression_of_their_own_leads_address(suppression, client, alice):
    client.force_login(alice)
    lift = reverse("admin:nurture_suppression_lift", args=[suppression.pk])
    before = written()

    assert (
        client.get(reverse("admin:nurture_suppression_change", args=[suppression.pk])).status_code
        == 200
    )
    assert client.get(lift).status_code == 403
    assert client.post(lift, {"reason": "He called and asked for the emails"}).status_code == 403

    suppression.refresh_from_db()
    assert suppression.is_active
    assert written() == before


def test_a_manager_cannot_even_see_a_suppression_of_another_managers_lead(suppression, client, bob):
    client.force_login(bob)
    before = written()

    page = client.get(reverse("admin:nurture_suppression_change", args=[suppression.pk]))
    lift = reverse("admin:nurture_suppression_lift", args=[suppression.pk])
    asked, posted = client.get(lift), client.post(lift, {"reason": "Because"})
    listing = client.get(reverse("admin:nurture_suppression_changelist"))

    assert (page.status_code, asked.status_code, posted.status_code) == (404, 404, 404)
    assert listing.status_code == 200
    assert IVAN not in listing.content.decode()
    suppression.refresh_from_db()
    assert suppression.is_active
    assert written() == before


@pytest.mark.parametrize("reason", ["", "   \n "])
def test_a_supervisor_cannot_lift_a_suppression_without_a_reason(suppression, client, olga, reason):
    client.force_login(olga)
    before = written()

    answer = client.post(
        reverse("admin:nurture_suppression_lift", args=[suppression.pk]), {"reason": reason}
    )

    assert answer.status_code == 200
    assert "This field is required." in answer.content.decode()
    suppression.refresh_from_db()
    assert suppression.is_active
    assert written() == before


def test_nothing_lifts_a_suppression_outside_the_lift_form(suppression, client, olga):
    client.force_login(olga)
    page = reverse("admin:nurture_suppression_change", args=[suppression.pk])

    edit = client.post(page, {"lifted_at": "2025-11-26 12:00", "lift_reason": "edit"})
    delete = client.post(
        reverse("admin:nurture_suppression_delete", args=[suppression.pk]), {"post": "yes"}
    )

    assert edit.status_code == 403
    assert delete.status_code == 403
    suppression.refresh_from_db()
    assert suppression.is_active


# --- Replays ----------------------------------------------------------------------------------


def test_a_replayed_unsubscribe_changes_nothing_and_says_already_unsubscribed(first_email, client):
    path = unsubscribe_path(first_email)
    assert "no more emails" in one_click(client, path).content.decode()
    before = written()
    suppressed = Suppression.objects.get()

    again = one_click(client, path)
    by_the_button = client.post(path)
    asked = client.get(path)

    for answer in (again, by_the_button, asked):
        assert answer.status_code == 200
        assert "already unsubscribed" in answer.content.decode()
    assert written() == before
    assert Suppression.objects.get() == suppressed


@pytest.fixture
def postmark(settings, client):
    """Postmark's tracking webhook, protected by our basic-auth secret."""
    settings.ANYMAIL_WEBHOOK_ESPS = ["postmark"]
    settings.ANYMAIL = {"WEBHOOK_SECRET": "anymail:s3cret"}

    def post(record_type, message, *, secret=b"anymail:s3cret", **fields):
        event = {
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
        return client.post(
            "/anymail/postmark/tracking/",
            json.dumps(event),
            content_type="application/json",
            HTTP_AUTHORIZATION="Basic " + base64.b64encode(secret).decode(),
        )

    return post


def test_a_bounce_then_a_dispatch_mails_nobody_with_that_address(
    second_ivan,
    first_email,
    nurtured_lead,
    smtp_server,
    postmark,
    clock,
    django_capture_on_commit_callbacks,
):
    sent = OutboundMessage.objects.get(enrollment__lead=nurtured_lead)

    answer = postmark("Bounce", sent, Type="HardBounce", TypeCode=1)

    assert answer.status_code == 200
    assert Suppression.objects.active().get(address=IVAN).reason == Suppression.Reason.BOUNCE
    assert dispatch_and_send(A_WEEK_LATER, clock, django_capture_on_commit_callbacks) == []
    for lead in (nurtured_lead, second_ivan):
        enrollment = lead.enrollments.get()
        assert (enrollment.state, enrollment.halt_reason) == ("halted", "bounce")
    assert len(smtp_server.received) == 1


def test_a_bounce_reported_again_writes_nothing(first_email, nurtured_lead, postmark):
    sent = OutboundMessage.objects.get(enrollment__lead=nurtured_lead)
    postmark("Bounce", sent, Type="HardBounce", TypeCode=1)
    before = written()

    assert postmark("Bounce", sent, Type="HardBounce", TypeCode=1).status_code == 200
    assert postmark("SpamComplaint", sent, Type="SpamComplaint", TypeCode=512).status_code == 200

    assert written() == before
    assert Suppression.objects.get().reason == Suppression.Reason.BOUNCE


def test_a_tracking_event_without_the_webhook_secret_suppresses_nothing(
    first_email, nurtured_lead, postmark
):
    sent = OutboundMessage.objects.get(enrollment__lead=nurtured_lead)
    before = written()

    answer = postmark("Bounce", sent, secret=b"anymail:guess", Type="HardBounce", TypeCode=1)

    assert 400 <= answer.status_code < 500
    assert written() == before
    assert nurtured_lead.enrollments.get().state == Enrollment.State.ACTIVE


# --- Rotating SECRET_KEY ----------------------------------------------------------------------

OLD_KEY = "the-key-the-email-was-signed-with-" + "o" * 30
NEW_KEY = "the-key-after-the-rotation-" + "n" * 37


@pytest.fixture
def email_signed_with_the_old_key(
    settings, clock, nurtured_lead, smtp_server, django_capture_on_commit_callbacks
):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    return send_first_email(clock, nurtured_lead, smtp_server, django_capture_on_commit_callbacks)


def test_an_unsubscribe_link_signed_with_the_old_key_still_works_after_a_rotation(
    email_signed_with_the_old_key, nurtured_lead, settings, client
):
    path = unsubscribe_path(email_signed_with_the_old_key)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]

    question = client.get(path)
    answer = one_click(client, path)

    assert question.status_code == 200
    assert "Stop the follow-up emails to ivan@client.example?" in question.content.decode()
    assert answer.status_code == 200
    assert Suppression.objects.active().get(address=IVAN).reason == "unsubscribe"
    assert nurtured_lead.enrollments.get().halt_reason == Enrollment.HaltReason.UNSUBSCRIBE


def test_an_old_key_link_is_refused_once_the_old_key_is_dropped(
    email_signed_with_the_old_key, nurtured_lead, settings, client
):
    path = unsubscribe_path(email_signed_with_the_old_key)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, []
    before = written()

    assert client.get(path).status_code == 404
    assert one_click(client, path).status_code == 404

    assert written() == before
    assert nurtured_lead.enrollments.get().state == Enrollment.State.ACTIVE
