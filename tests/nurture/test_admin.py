from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils.html import escape

from crm import services as crm_services
from nurture import services, tasks
from nurture.dispatch import dispatch_due
from nurture.models import Enrollment, OutboundMessage

MSK = ZoneInfo("Europe/Moscow")

# Enrolled Thu 2025-12-25 14:00 Moscow: the six sends (see test_selectors.py for the sums).
SIX_DATES = [
    "Tue, 30 Dec 2025, 14:00",
    "Wed, 14 Jan 2026, 14:00",
    "Mon, 19 Jan 2026, 14:00",
    "Thu, 22 Jan 2026, 14:00",
    "Tue, 27 Jan 2026, 14:00",
    "Fri, 30 Jan 2026, 14:00",
]
NEW_YEAR = "shifted past New Year Holidays (2026-01-01)"


@pytest.fixture
def clock_start():
    """Christmas Day 2025, 14:00 in Moscow: a working day in Russia, the sending window open."""
    return datetime(2025, 12, 25, 14, 0, tzinfo=MSK)


@pytest.fixture
def bobs_nurtured_lead(make_lead, bob, django_capture_on_commit_callbacks):
    lead = make_lead(bob, first_name="Anna", email="anna@client.example", title="Bakery")
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(lead, "nurturing", by=bob)
    return lead


@pytest.fixture
def first_dispatch(clock, django_capture_on_commit_callbacks):
    """The first sends of everybody enrolled at Christmas are created, not sent yet."""

    def dispatch():
        clock.move_to(datetime(2025, 12, 30, 14, 0, tzinfo=MSK))
        with django_capture_on_commit_callbacks(execute=False):
            return dispatch_due()

    return dispatch


def page(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


# --- Sequences and the preview --------------------------------------------------------------


def test_the_sequence_page_shows_its_templates_and_a_preview_button(client, olga, default_sequence):
    client.force_login(olga)

    html = page(client, reverse("admin:nurture_sequence_change", args=[default_sequence.pk]))

    assert 'name="templates-0-subject"' in html
    assert "Has a decision been made on project" in html
    assert "Очень хотим с Вами работать :)" in html
    assert reverse("admin:nurture_sequence_preview", args=[default_sequence.pk]) in html


def test_the_preview_shows_both_texts_for_a_lead_in_its_language_and_six_dates(
    clock, client, alice, make_lead, default_sequence
):
    lead = make_lead(alice, title="Shop", language="ru")
    client.force_login(alice)

    html = page(
        client,
        reverse("admin:nurture_sequence_preview", args=[default_sequence.pk]),
        lead=lead.pk,
    )

    assert html.count("Проект «Shop»") >= 2
    assert "\nПринято ли решение по проекту «Shop»?" in html
    assert "Очень хотим с Вами работать :) Принято ли решение по проекту «Shop»?" in html
    assert "Emails 1, 3, 5" in html
    assert "Emails 2, 4, 6" in html
    assert '<iframe sandbox srcdoc="&lt;p&gt;Ivan, добрый день!&lt;/p&gt;' in html
    assert "Best regards,\nAlice" in html  # the manager's signature
    positions = [html.index(date) for date in SIX_DATES]
    assert positions == sorted(positions)
    assert NEW_YEAR in html


def test_the_preview_escapes_hostile_lead_data(clock, client, alice, make_lead, default_sequence):
    lead = make_lead(
        alice,
        title="<script>alert(1)</script>",
        first_name='"><img src=x onerror=alert(2)>',
        language="en",
    )
    client.force_login(alice)

    html = page(
        client,
        reverse("admin:nurture_sequence_preview", args=[default_sequence.pk]),
        lead=lead.pk,
    )

    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "Project “&lt;script&gt;alert(1)&lt;/script&gt;”" in html  # the subject, as text
    # The HTML body escapes the title itself; the frame's attribute escapes it once more.
    assert "&amp;lt;script&amp;gt;alert(1)" in html


def test_a_manager_cannot_preview_the_emails_of_another_managers_lead(
    clock, client, bob, nurtured_lead, default_sequence
):
    client.force_login(bob)
    url = reverse("admin:nurture_sequence_preview", args=[default_sequence.pk])

    response = client.get(url, {"lead": nurtured_lead.pk})
    missing = client.get(url, {"lead": nurtured_lead.pk + 1000})

    assert response.status_code == missing.status_code == 404  # as if it did not exist
    assert "Принято ли решение" not in response.content.decode()


@pytest.mark.parametrize(("manager", "found"), [("alice", ["Shop"]), ("bob", [])])
def test_the_preview_offers_only_the_leads_a_manager_may_see(
    client, request, make_lead, alice, bob, manager, found
):
    make_lead(alice, title="Shop")
    client.force_login(request.getfixturevalue(manager))

    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "nurture", "model_name": "enrollment", "field_name": "lead", "term": "shop"},
    )

    assert response.status_code == 200
    assert [result["text"].split(" — ")[1] for result in response.json()["results"]] == found


# --- Enrollments ----------------------------------------------------------------------------


def test_the_enrollment_list_shows_the_step_and_the_next_send(clock, client, alice, nurtured_lead):
    client.force_login(alice)

    html = page(client, reverse("admin:nurture_enrollment_changelist"))

    assert "Ivan Petrov — Shop" in html
    assert "0 of 6" in html


def test_the_enrollment_page_shows_all_six_planned_sends_and_nothing_to_edit(
    clock, client, alice, nurtured_lead
):
    enrollment = nurtured_lead.enrollments.get()
    client.force_login(alice)

    html = page(client, reverse("admin:nurture_enrollment_change", args=[enrollment.pk]))

    positions = [html.index(date) for date in SIX_DATES]
    assert positions == sorted(positions)
    assert NEW_YEAR in html
    assert 'name="_save"' not in html


def test_halting_enrollments_by_hand_stops_them_for_good(
    clock, client, alice, nurtured_lead, first_dispatch
):
    [message_id] = first_dispatch()
    enrollment = nurtured_lead.enrollments.get()
    client.force_login(alice)

    response = client.post(
        reverse("admin:nurture_enrollment_changelist"),
        {"action": "halt", "_selected_action": [enrollment.pk]},
        follow=True,
    )

    assert "1 enrollment halted." in response.content.decode()
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.halt_reason) == ("halted", "manual")
    assert enrollment.next_send_at is None
    assert OutboundMessage.objects.get(pk=message_id).state == OutboundMessage.State.CANCELLED


def test_restarting_an_enrollment_starts_afresh_from_the_first_email(
    clock, client, alice, nurtured_lead, first_dispatch
):
    first_dispatch()
    old = nurtured_lead.enrollments.get()
    client.force_login(alice)

    response = client.post(
        reverse("admin:nurture_enrollment_changelist"),
        {"action": "restart", "_selected_action": [old.pk]},
        follow=True,
    )

    assert "1 enrollment restarted from the first email." in response.content.decode()
    old.refresh_from_db()
    assert (old.state, old.halt_reason, old.sent_count) == ("halted", "manual", 1)
    new = nurtured_lead.enrollments.get(state=Enrollment.State.ACTIVE)
    assert new.sent_count == 0
    # From Tue 30 Dec 14:00: Dec 31 and Jan 1-11 are off, then Jan 12, 13, 14.
    assert new.next_send_at == datetime(2026, 1, 14, 14, 0, tzinfo=MSK)


def test_an_old_enrollment_is_not_restarted_while_its_lead_is_in_the_sequence_again(
    clock, client, alice, nurtured_lead
):
    old = nurtured_lead.enrollments.get()
    services.restart(old)
    client.force_login(alice)

    response = client.post(
        reverse("admin:nurture_enrollment_changelist"),
        {"action": "restart", "_selected_action": [old.pk]},
        follow=True,
    )

    assert "1 enrollment was not restarted" in response.content.decode()
    assert nurtured_lead.enrollments.filter(state=Enrollment.State.ACTIVE).count() == 1


def test_managers_see_only_the_enrollments_of_their_own_leads(
    clock, client, alice, bob, olga, nurtured_lead, bobs_nurtured_lead
):
    alices = nurtured_lead.enrollments.get()
    client.force_login(bob)

    listed = page(client, reverse("admin:nurture_enrollment_changelist"))
    other = client.get(reverse("admin:nurture_enrollment_change", args=[alices.pk]))
    halted = client.post(
        reverse("admin:nurture_enrollment_changelist"),
        {"action": "halt", "_selected_action": [alices.pk]},
    )
    client.force_login(olga)
    everything = page(client, reverse("admin:nurture_enrollment_changelist"))

    assert "Bakery" in listed
    assert "Shop" not in listed
    assert other.status_code == 404  # as if it did not exist
    assert halted.status_code == 302
    alices.refresh_from_db()
    assert alices.state == Enrollment.State.ACTIVE
    assert "Bakery" in everything and "Shop" in everything


# --- The outbox -----------------------------------------------------------------------------


def test_the_outbox_shows_a_message_exactly_as_sent(
    clock,
    client,
    alice,
    nurtured_lead,
    smtp_server,
    eager_tasks,
    django_capture_on_commit_callbacks,
):
    clock.move_to(datetime(2025, 12, 30, 14, 0, tzinfo=MSK))
    with django_capture_on_commit_callbacks(execute=True):
        tasks.dispatch_due()
    smtp_server.handler.wait_for(1)
    message = OutboundMessage.objects.get(state=OutboundMessage.State.SENT)
    client.force_login(alice)

    listed = page(client, reverse("admin:nurture_outboundmessage_changelist"))
    html = page(client, reverse("admin:nurture_outboundmessage_change", args=[message.pk]))

    assert "ivan@client.example" in listed
    assert "Проект «Shop»" in html
    assert escape(message.message_id) in html
    assert '<pre style="white-space: pre-wrap">Ivan, добрый день!' in html
    assert '<iframe sandbox srcdoc="&lt;p&gt;Ivan, добрый день!' in html
    assert 'name="_save"' not in html


def test_messages_are_never_added_or_deleted_by_hand(clock, client, olga):
    client.force_login(olga)

    add = client.get(reverse("admin:nurture_outboundmessage_add"))
    listed = page(client, reverse("admin:nurture_outboundmessage_changelist"))

    assert add.status_code == 403
    assert "delete_selected" not in listed


def test_managers_see_only_the_messages_to_their_own_leads(
    clock, client, alice, bob, nurtured_lead, bobs_nurtured_lead, first_dispatch
):
    first_dispatch()
    alices = OutboundMessage.objects.get(enrollment__lead=nurtured_lead)
    client.force_login(bob)

    listed = page(client, reverse("admin:nurture_outboundmessage_changelist"))
    other = client.get(reverse("admin:nurture_outboundmessage_change", args=[alices.pk]))

    assert "anna@client.example" in listed
    assert "ivan@client.example" not in listed
    assert other.status_code == 404


def test_a_reassigned_leads_emails_move_to_its_new_managers_outbox(
    clock, client, alice, bob, olga, nurtured_lead, first_dispatch
):
    first_dispatch()
    message = OutboundMessage.objects.get(enrollment__lead=nurtured_lead)
    assert message.lead_manager == alice

    crm_services.reassign(nurtured_lead, bob, by=olga)

    client.force_login(bob)
    assert "ivan@client.example" in page(
        client, reverse("admin:nurture_outboundmessage_changelist")
    )
    client.force_login(alice)
    assert "ivan@client.example" not in page(
        client, reverse("admin:nurture_outboundmessage_changelist")
    )
    url = reverse("admin:nurture_outboundmessage_change", args=[message.pk])
    assert client.get(url).status_code == 404


@pytest.mark.postgres
def test_on_postgresql_a_managers_outbox_reads_its_own_index(
    clock, client, alice, nurtured_lead, first_dispatch
):
    from django.db import connection

    from tests.plans import plan_of, queries_of

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    first_dispatch()
    client.force_login(alice)
    [count] = queries_of(
        client,
        reverse("admin:nurture_outboundmessage_changelist"),
        starting="SELECT COUNT(*)",
        containing="nurture_outboundmessage",
    )

    assert "outbound_lead_manager_idx" in plan_of(count)
    assert "nurture_enrollment" not in plan_of(count)


# --- The lead's page, the calendar and mailbox limits ---------------------------------------


def test_the_lead_page_shows_the_six_planned_send_dates(clock, client, alice, nurtured_lead):
    client.force_login(alice)

    html = page(client, reverse("admin:crm_lead_change", args=[nurtured_lead.pk]))

    positions = [html.index(date) for date in SIX_DATES]
    assert positions == sorted(positions)
    assert NEW_YEAR in html
    assert 'name="enrollments-0-state"' not in html


def test_the_lead_page_names_the_holidays_in_russian_for_a_russian_reader(
    clock, client, alice, nurtured_lead
):
    client.force_login(alice)

    html = client.get(
        reverse("admin:crm_lead_change", args=[nurtured_lead.pk]),
        headers={"accept-language": "ru"},
    ).content.decode()

    assert "перенесено из-за праздника «Новогодние каникулы» (2026-01-01)" in html


@pytest.mark.parametrize("sends_enrollments_form", [True, False], ids=["browser", "script"])
def test_the_lead_is_saved_with_or_without_the_read_only_enrollments_form(
    clock, client, alice, nurtured_lead, sends_enrollments_form
):
    enrollment = nurtured_lead.enrollments.get()
    client.force_login(alice)
    form = {
        "title": "Shop, renamed",
        "status": nurtured_lead.status_id,
        "responsible": alice.pk,
        "first_name": "Ivan",
        "last_name": "Petrov",
        "email": "ivan@client.example",
        "language": "ru",
        "activities-TOTAL_FORMS": "0",
        "activities-INITIAL_FORMS": "0",
    }
    if sends_enrollments_form:
        form |= {
            "enrollments-TOTAL_FORMS": "1",
            "enrollments-INITIAL_FORMS": "1",
            "enrollments-0-id": enrollment.pk,
            "enrollments-0-lead": nurtured_lead.pk,
        }

    response = client.post(reverse("admin:crm_lead_change", args=[nurtured_lead.pk]), form)

    assert response.status_code == 302
    nurtured_lead.refresh_from_db()
    assert nurtured_lead.title == "Shop, renamed"
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.sent_count) == (Enrollment.State.ACTIVE, 0)


def test_the_company_calendar_and_mailbox_limits_are_edited_in_lists(client, olga):
    client.force_login(olga)

    calendar = page(client, reverse("admin:nurture_calendarday_changelist"))
    limits = page(client, reverse("admin:nurture_mailboxlimit_changelist"))

    assert "company calendar" in calendar.lower()
    assert "mailbox limits" in limits.lower()
