"""The suppression list: one entry per address, which stops every lead that has it, shown on
the lead's page, and lifted only by a supervisor who says why."""

import importlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from crm import services as crm_services
from crm.models import Activity, Lead, Notification
from nurture import delivery_events, sending, services
from nurture.dispatch import dispatch_due
from nurture.models import Enrollment, OutboundMessage, Suppression
from tests.celery_worker import use_broker
from tests.nurture.test_races import Background, blockers_of, run_together

MSK = ZoneInfo("Europe/Moscow")
FIRST_SEND = datetime(2025, 11, 26, 10, 0, tzinfo=MSK)  # for leads enrolled Thu 20 Nov 19:30
A_WEEK_LATER = FIRST_SEND + timedelta(days=7)
IVAN = "ivan@client.example"
LIVE = pytest.mark.django_db(transaction=True, serialized_rollback=True)
Reason = Suppression.Reason


@pytest.fixture
def nurture(django_capture_on_commit_callbacks):
    """Move a lead to nurturing, as a manager does (the receivers run)."""

    def move(lead, by):
        with django_capture_on_commit_callbacks(execute=True):
            crm_services.change_status(lead, "nurturing", by=by)
        return lead

    return move


@pytest.fixture
def three_ivans(clock, nurtured_lead, make_lead, alice, bob, nurture):
    """One person, three leads with his address, all nurtured: two of alice's, one of bob's."""
    return [
        nurtured_lead,
        nurture(make_lead(alice, first_name="Ivan", email=IVAN, title="Second shop"), alice),
        nurture(make_lead(bob, first_name="Ivan", email=IVAN, title="Warehouse"), bob),
    ]


def dispatched(moment, clock, django_capture_on_commit_callbacks) -> list[int]:
    clock.move_to(moment)
    with django_capture_on_commit_callbacks(execute=False):
        return dispatch_due()


# --- Suppressing ------------------------------------------------------------------------------


def test_suppressing_an_address_stops_every_lead_with_it_and_tells_each_manager_once(
    three_ivans, alice, bob
):
    suppression = services.suppress_address(" IVAN@client.example", Reason.COMPLAINT)

    assert (suppression.address, suppression.reason, suppression.halted) == (IVAN, "complaint", 3)
    for lead in three_ivans:
        lead.refresh_from_db()
        assert (lead.do_not_email, lead.email_status) == (True, Lead.EmailStatus.COMPLAINED)
        enrollment = lead.enrollments.get()
        assert (enrollment.state, enrollment.halt_reason) == ("halted", "complaint")
        note = lead.activities.get(kind=Activity.Kind.NOTE)
        assert (note.payload["suppression"], note.payload["halted"]) == (suppression.pk, 1)
    [to_alice] = Notification.objects.filter(user=alice)
    [to_bob] = Notification.objects.filter(user=bob)
    assert to_alice.message == (
        "Emails to ivan@client.example stopped: spam complaint (Ivan Petrov, Ivan Petrov)."
    )
    assert to_bob.message == "Emails to ivan@client.example stopped: spam complaint (Ivan Petrov)."


def test_an_address_already_suppressed_for_another_reason_stays_as_it_is(nurtured_lead):
    services.suppress_address(IVAN, Reason.UNSUBSCRIBE)
    counts = Activity.objects.count(), Notification.objects.count()

    halted = services.mark_address(
        nurtured_lead, Lead.EmailStatus.COMPLAINED, Enrollment.HaltReason.COMPLAINT
    )

    assert halted == 0
    assert (Activity.objects.count(), Notification.objects.count()) == counts
    assert Suppression.objects.get().reason == Reason.UNSUBSCRIBE


def test_an_empty_address_suppresses_nothing(make_lead, alice):
    lead = make_lead(alice, email="")

    assert services.mark_address(lead, "bounced", Enrollment.HaltReason.BOUNCE) == 0
    assert not Suppression.objects.exists()


def test_the_database_keeps_addresses_lower_case_and_one_in_force_each(db):
    suppression = services.suppress_address(IVAN, Reason.BOUNCE)

    with pytest.raises(IntegrityError), transaction.atomic():
        Suppression.objects.filter(pk=suppression.pk).update(address="Ivan@client.example")
    with pytest.raises(IntegrityError), transaction.atomic():
        Suppression.objects.bulk_create([Suppression(address=IVAN, reason=Reason.UNSUBSCRIBE)])
    with pytest.raises(IntegrityError), transaction.atomic():
        Suppression.objects.filter(pk=suppression.pk).update(lifted_at=FIRST_SEND)  # no reason


def test_an_esp_event_suppresses_the_address_the_email_went_to(
    clock, nurtured_lead, django_capture_on_commit_callbacks
):
    [message_id] = dispatched(FIRST_SEND, clock, django_capture_on_commit_callbacks)
    OutboundMessage.objects.filter(pk=message_id).update(to_email="ivan.old@client.example")

    delivery_events.handle_delivery_event(
        "bounced",
        provider_message_id="",
        recipient="ivan.old@client.example",
        metadata={"outbound_message": str(message_id)},
        esp="postmark",
    )

    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.details["message"]) == (
        "ivan.old@client.example",
        message_id,
    )
    assert nurtured_lead.enrollments.get().state == Enrollment.State.ACTIVE  # its new address


def test_an_esp_event_for_an_address_no_lead_has_yet_still_suppresses_it(
    make_lead, alice, clock, nurture, django_capture_on_commit_callbacks
):
    assert not delivery_events.handle_delivery_event(
        "complained",
        provider_message_id="x",
        recipient="Nobody@client.example",
        metadata={},
        esp="x",
    )
    newcomer = nurture(make_lead(alice, email="nobody@client.example"), alice)

    assert dispatched(A_WEEK_LATER, clock, django_capture_on_commit_callbacks) == []
    assert newcomer.enrollments.get().halt_reason == Enrollment.HaltReason.COMPLAINT


# --- The lead's page and the admin --------------------------------------------------------------


def test_the_leads_page_says_since_when_and_why_its_address_is_suppressed(
    nurtured_lead, client, alice
):
    client.force_login(alice)
    page = reverse("admin:crm_lead_change", args=[nurtured_lead.pk])
    assert "suppression list" not in client.get(page).content.decode()
    suppression = services.suppress_address(IVAN, Reason.UNSUBSCRIBE)

    html = client.get(page).content.decode()

    assert "ivan@client.example is on the suppression list since" in html
    assert "(unsubscribed): no lead with this address is emailed" in html
    assert reverse("admin:nurture_suppression_change", args=[suppression.pk]) in html


def test_managers_see_only_the_suppressions_of_their_own_leads_addresses(
    nurtured_lead, make_lead, bob, olga, client
):
    make_lead(bob, email="anna@client.example")
    services.suppress_address(IVAN, Reason.UNSUBSCRIBE)
    services.suppress_address("anna@client.example", Reason.BOUNCE)
    services.suppress_address("nobody@client.example", Reason.BOUNCE)
    listing = reverse("admin:nurture_suppression_changelist")

    def seen_by(user):
        client.force_login(user)
        html = client.get(listing).content.decode()
        return {a for a in (IVAN, "anna@client.example", "nobody@client.example") if a in html}

    assert seen_by(nurtured_lead.responsible) == {IVAN}
    assert seen_by(bob) == {"anna@client.example"}
    assert seen_by(olga) == {IVAN, "anna@client.example", "nobody@client.example"}


def test_a_supervisor_lifts_a_suppression_with_a_reason_from_its_page(
    three_ivans, client, olga, alice, clock, django_capture_on_commit_callbacks
):
    suppression = services.suppress_address(IVAN, Reason.UNSUBSCRIBE)
    client.force_login(olga)
    page = reverse("admin:nurture_suppression_change", args=[suppression.pk])
    lift = reverse("admin:nurture_suppression_lift", args=[suppression.pk])
    assert lift in client.get(page).content.decode()
    assert "Why may this address be emailed again?" in client.get(lift).content.decode()

    answer = client.post(lift, {"reason": "  He phoned: please email him again.  "})

    assert (answer.status_code, answer.url) == (302, page)
    suppression.refresh_from_db()
    assert (suppression.lifted_by, suppression.lift_reason) == (
        olga,
        "He phoned: please email him again.",
    )
    assert suppression.lifted_at is not None
    entry = LogEntry.objects.get(object_id=str(suppression.pk))
    assert (entry.user, entry.action_flag) == (olga, CHANGE)
    assert "Changed lifted at, lifted by and why it was lifted." in entry.get_change_message()
    for lead in three_ivans:
        lead.refresh_from_db()
        note = lead.activities.filter(kind=Activity.Kind.NOTE).first()
        assert (note.actor, note.payload["why"]) == (olga, "He phoned: please email him again.")
        assert (lead.do_not_email, lead.email_status) == (True, "")
        assert lead.enrollments.get().state == Enrollment.State.HALTED  # nobody re-enrolled
    assert "untick “do not email”" in Notification.objects.filter(user=alice).first().message
    assert "Lift…" not in client.get(page).content.decode()
    assert client.post(lift, {"reason": "again"}).status_code == 302  # already lifted: no change
    assert LogEntry.objects.count() == 1


def test_after_a_lift_a_manager_can_email_the_lead_again(
    nurtured_lead, alice, olga, clock, smtp_server, nurture, django_capture_on_commit_callbacks
):
    suppression = services.suppress_address(IVAN, Reason.UNSUBSCRIBE)
    services.lift_suppression(suppression, by=olga, reason="He asked to be emailed again")
    nurtured_lead.refresh_from_db()
    nurtured_lead.do_not_email = False
    nurtured_lead.save()
    crm_services.change_status(nurtured_lead, "in_progress", by=alice)
    nurture(nurtured_lead, alice)

    sent = [
        sending.send_message(pk)
        for pk in dispatched(A_WEEK_LATER, clock, django_capture_on_commit_callbacks)
    ]

    assert sent == ["sent"]
    assert smtp_server.handler.wait_for(1)[0]["To"].endswith("<ivan@client.example>")


def test_an_address_unsubscribed_again_after_a_lift_is_suppressed_again(nurtured_lead, olga):
    first = services.suppress_address(IVAN, Reason.UNSUBSCRIBE)
    services.lift_suppression(first, by=olga, reason="By mistake")

    second = services.suppress_address(IVAN, Reason.UNSUBSCRIBE)

    assert second is not None and second.pk != first.pk
    assert list(Suppression.objects.active()) == [second]


def test_a_long_reason_is_kept_whole_and_shortened_in_the_notification(nurtured_lead, olga):
    suppression = services.suppress_address(IVAN, Reason.UNSUBSCRIBE)
    reason = "He phoned. " * 90

    assert services.lift_suppression(suppression, by=olga, reason=reason)

    assert Suppression.objects.get().lift_reason == reason.strip()
    notification = Notification.objects.filter(user=nurtured_lead.responsible).first()
    assert len(notification.message) == 500
    assert notification.message.endswith("…")


def test_only_a_supervisor_lifts_and_only_with_a_reason(nurtured_lead, alice, olga):
    suppression = services.suppress_address(IVAN, Reason.BOUNCE)

    with pytest.raises(PermissionDenied):
        services.lift_suppression(suppression, by=alice, reason="Please")
    with pytest.raises(ValidationError):
        services.lift_suppression(suppression, by=olga, reason="  ")

    suppression.refresh_from_db()
    assert suppression.is_active


# --- Addresses marked before there was a list -------------------------------------------------


def test_addresses_marked_on_leads_before_the_list_are_suppressed_by_the_migration(
    make_lead, alice, bob
):
    old = make_lead(alice, email="old@client.example")
    twice = make_lead(bob, email="old@client.example")
    bounced = make_lead(bob, email="gone@client.example")
    make_lead(alice, email="fine@client.example", do_not_email=True)  # the manager's own choice
    Lead.objects.filter(pk__in=[old.pk, twice.pk]).update(email_status="unsubscribed")
    Lead.objects.filter(pk=bounced.pk).update(email_status="bounced")
    migration = importlib.import_module("nurture.migrations.0005_suppression")

    migration.suppress_addresses_marked_on_leads(apps, connection.schema_editor())

    assert dict(Suppression.objects.values_list("address", "reason")) == {
        "old@client.example": "unsubscribe",
        "gone@client.example": "bounce",
    }


# --- Races (PostgreSQL) -----------------------------------------------------------------------


@pytest.fixture
def row_locks():
    if connection.vendor == "sqlite":
        pytest.skip("needs row locks held by one connection and waited for by another")


@LIVE
def test_two_unsubscribes_at_once_suppress_the_address_once(row_locks, three_ivans, alice):
    results = run_together(
        lambda: services.suppress_address(IVAN, Reason.UNSUBSCRIBE),
        lambda: services.suppress_address(IVAN, Reason.UNSUBSCRIBE),
    )

    assert sorted(result is None for result in results) == [False, True]
    assert Suppression.objects.count() == 1
    assert Activity.objects.filter(kind=Activity.Kind.NOTE).count() == 3
    assert Notification.objects.filter(user=alice).count() == 1


@LIVE
def test_a_send_waiting_for_a_suppression_in_flight_does_not_go_out(
    row_locks, clock, nurtured_lead, smtp_server, tmp_path
):
    clock.move_to(FIRST_SEND)
    with use_broker("filesystem", tmp_path):
        [message_id] = dispatch_due()
    _, claimed = sending._claim([message_id])  # rendered and leased: the worker goes on to send

    with transaction.atomic():
        services.suppress_address(IVAN, Reason.COMPLAINT)  # the lead's row is locked
        sender = Background(lambda: sending._deliver(claimed))
        sender.start()
        blockers = blockers_of(sender)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert blockers == [cursor.fetchone()[0]]

    assert sender.outcome() == {message_id: "cancelled"}
    assert smtp_server.received == []
    assert OutboundMessage.objects.get(pk=message_id).state == OutboundMessage.State.CANCELLED
