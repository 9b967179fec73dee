"""Today, notifications, the pipeline and signing in."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from crm import services
from crm.models import Lead, LeadStatus, Notification, StatusChangeCause

pytestmark = pytest.mark.django_db


def test_signing_in_lands_on_today(client, alice):
    answer = client.post(reverse("login"), {"username": "alice", "password": "pw"})

    assert answer.status_code == 302 and answer.url == reverse("crm:today")
    assert client.get(reverse("crm:today")).status_code == 200


def test_a_visitor_is_sent_to_sign_in(client):
    answer = client.get(reverse("crm:lead_list"))

    assert answer.status_code == 302 and answer.url.startswith(reverse("login"))


def test_a_password_reset_link_arrives_by_email(client, alice):
    client.post(reverse("password_reset"), {"email": "alice@crm.example"})

    assert len(mail.outbox) == 1
    assert "/accounts/password/reset/" in mail.outbox[0].body


def test_today_shows_a_lead_that_wrote_back_until_somebody_acts(alices_client, alice, make_lead):
    lead = make_lead(alice, first_name="Anna", last_name="Replied", status_code="nurturing")
    services.change_status(lead, "in_progress", cause=StatusChangeCause.REPLY)

    assert "Anna Replied" in alices_client.get(reverse("crm:today")).content.decode()

    services.add_note(lead, "Answered her", by=alice)

    section = alices_client.get(reverse("crm:today")).content.decode()
    assert "Anna Replied" not in section.split("They answered")[1].split("</section>")[0]


@pytest.mark.parametrize(
    "language, said",
    [("en", "wrote back 0\xa0minutes ago"), ("ru", "ответил(а) на письмо 0\xa0минут назад")],
)
def test_today_says_when_the_lead_answered_in_a_sentence_of_the_readers_language(
    alices_client, alice, make_lead, language, said
):
    lead = make_lead(alice, first_name="Anna", last_name="Replied", status_code="nurturing")
    services.change_status(lead, "in_progress", cause=StatusChangeCause.REPLY)
    alices_client.cookies["django_language"] = language

    page = alices_client.get(reverse("crm:today")).content.decode()

    assert said in page


def test_today_lists_new_leads_nobody_contacted_yet(alices_client, alice, make_lead):
    make_lead(alice, first_name="Fresh", last_name="Lead")
    contacted = make_lead(alice, first_name="Called", last_name="Already", email="c@example.com")
    services.add_note(contacted, "Called", by=alice)

    page = alices_client.get(reverse("crm:today")).content.decode()

    assert "Fresh Lead" in page and "Called Already" not in page


def test_every_page_counts_the_unread_and_opening_one_marks_it_read(
    alices_client, alice, make_lead
):
    lead = make_lead(alice)
    notification = services.notify(alice, "Somebody called", lead=lead)

    assert '<span class="badge"' in alices_client.get(reverse("crm:lead_list")).content.decode()

    answer = alices_client.get(reverse("crm:notification_open", args=[notification.pk]))

    assert answer.url == reverse("crm:lead_detail", args=[lead.pk])
    assert Notification.objects.get().is_read


def test_marking_all_read_leaves_colleagues_notifications_alone(alices_client, alice, bob):
    services.notify(alice, "For Alice")
    services.notify(bob, "For Bob")

    alices_client.post(reverse("crm:notifications_read"))

    assert dict(Notification.objects.values_list("message", "is_read")) == {
        "For Alice": True,
        "For Bob": False,
    }


def test_the_pipeline_moves_a_lead_through_the_status_service(alices_client, alice, make_lead):
    lead = make_lead(alice)

    answer = alices_client.post(
        reverse("crm:pipeline_move", args=[lead.pk]),
        {"status": "in_progress"},
        headers={"HX-Request": "true"},
    )

    assert answer.status_code == 200 and "moved to" in answer.content.decode()
    assert Lead.objects.get().status.code == "in_progress"
    assert lead.activities.filter(kind="status_change").exists()


def test_today_asks_the_database_as_often_for_a_long_day_as_for_a_short_one(
    alices_client, alice, make_lead, django_assert_max_num_queries
):
    def a_day_of(count):
        for number in range(count):
            lead = make_lead(alice, first_name=f"D{number}", email=f"d{number}@example.com")
            for hours in (-3, 2, 30):  # overdue, today or tomorrow, upcoming
                due = timezone.now() + timedelta(hours=hours)
                services.create_task(lead, f"Step {number}", due, alice, by=alice)
            services.notify(alice, f"News {number}", lead=lead)

    a_day_of(2)
    with django_assert_max_num_queries(20) as short:
        alices_client.get(reverse("crm:today"))
    a_day_of(30)

    with django_assert_max_num_queries(len(short.captured_queries)):
        page = alices_client.get(reverse("crm:today")).content.decode()

    assert page.count('<li class="task overdue">') == 10


def test_the_pipeline_counts_every_lead_but_shows_the_first_of_each_column(
    alices_client, alice, make_lead, django_assert_max_num_queries
):
    for number in range(25):
        make_lead(alice, first_name=f"L{number}", email=f"l{number}@example.com")

    with django_assert_max_num_queries(15):
        page = alices_client.get(reverse("crm:pipeline")).content.decode()

    assert page.count('class="lead-card"') == 20
    assert "?after=20" in page


def test_a_column_counts_up_to_its_cap_then_says_over(
    alices_client, alice, bob, make_lead, monkeypatch
):
    monkeypatch.setattr("crm.selectors.COLUMN_COUNT_CAP", 3)
    for number in range(4):
        make_lead(alice, first_name=f"N{number}", email=f"n{number}@example.com")
    for number in range(5):
        make_lead(bob, first_name=f"B{number}", email=f"b{number}@example.com")  # not hers
    for number in range(3):
        lead = make_lead(alice, first_name=f"P{number}", email=f"p{number}@example.com")
        services.change_status(lead, "in_progress", by=alice)

    page = alices_client.get(reverse("crm:pipeline")).content.decode()

    def heading(code):
        return page.split(f'id="column-{code}"')[1].split("</h2>")[0]

    assert '<span class="muted" data-capped>over 3</span>' in heading("new")
    assert '<span class="muted">3</span>' in heading("in_progress")
    assert '<span class="muted">0</span>' in heading("converted")


def test_each_pipeline_card_offers_every_status_with_its_own_chosen(
    alices_client, alice, make_lead
):
    new = make_lead(alice, first_name="Nina")
    moved = make_lead(alice, first_name="Pavel")
    services.change_status(moved, "in_progress", by=alice)

    page = alices_client.get(reverse("crm:pipeline")).content.decode()

    for lead, chosen in ((new, "new"), (moved, "in_progress")):
        select = page.split(f'id="move-{lead.pk}"')[1].split("</select>")[0]
        assert select.count("<option") == LeadStatus.objects.count()
        assert f'<option value="{chosen}" selected>' in select and select.count("selected") == 1


def test_a_call_alice_took_from_a_colleagues_lead_says_whose_lead_it_is(
    alices_client, alice, bob, make_lead, django_capture_on_commit_callbacks
):
    from telephony.calls.services import apply_event
    from tests.telephony.conftest import call_event

    make_lead(bob, first_name="Boris", last_name="Bakerov", phone_raw="+7 916 123-45-67")
    with django_capture_on_commit_callbacks(execute=True):
        apply_event("pbx", call_event("call.ringing", at=timezone.now()))

    calls = alices_client.get(reverse("crm:today")).content.decode().split("My calls today")[1]

    assert "a lead of Bob" in calls and "Bakerov" not in calls


@pytest.mark.postgres
@pytest.mark.parametrize(
    "marker, index",
    [
        ("'completed'", "enrollment_completed_idx"),
        ("'missed'", "call_missed_idx"),
    ],
)
def test_on_postgresql_todays_unanswered_and_missed_read_their_partial_indexes(
    alices_client, marker, index
):
    from django.db import connection

    from tests.plans import plan_of, queries_of

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    [sql] = queries_of(alices_client, reverse("crm:today"), containing=marker)
    plan = plan_of(sql)

    assert index in plan
