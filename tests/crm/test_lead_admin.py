import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm import services as crm_services
from crm.models import Activity, Lead


@pytest.fixture
def lead_form(status, alice):
    def form(**overrides):
        data = {
            "title": "Online shop",
            "status": status("new").pk,
            "responsible": alice.pk,
            "first_name": "Ivan",
            "last_name": "Petrov",
            "email": "ivan@example.com",
            "phone_raw": "8 (916) 123-45-67",
            "company": "",
            "source": "",
            "language": "",
            "time_zone": "",
            "activities-TOTAL_FORMS": "0",
            "activities-INITIAL_FORMS": "0",
        }
        return {**data, **overrides}

    return form


@pytest.fixture
def as_alice(client, alice):
    client.force_login(alice)
    return client


@pytest.mark.parametrize("typed", ["8 (916) 123-45-67", "+7 916 1234567", "9161234567", "Petrov"])
def test_leads_are_found_by_phone_in_any_format_and_by_name(as_alice, make_lead, alice, typed):
    make_lead(alice, title="Found", phone_raw="+79161234567")
    make_lead(alice, title="Other", first_name="Anna", last_name="Smirnova", email="anna@x.ru")

    page = as_alice.get(reverse("admin:crm_lead_changelist"), {"q": typed}).content.decode()

    assert ">Found<" in page
    assert ">Other<" not in page


def test_leads_are_found_by_email_and_title(as_alice, make_lead, alice):
    make_lead(alice, title="Bakery website", email="baker@bread.example")

    by_email = as_alice.get(reverse("admin:crm_lead_changelist"), {"q": "bread.example"})
    by_title = as_alice.get(reverse("admin:crm_lead_changelist"), {"q": "bakery"})

    assert "Bakery website" in by_email.content.decode()
    assert "Bakery website" in by_title.content.decode()


def test_a_lead_added_in_the_admin_gets_its_first_timeline_entry(as_alice, lead_form, alice):
    response = as_alice.post(reverse("admin:crm_lead_add"), lead_form())

    assert response.status_code == 302
    lead = Lead.objects.get()
    assert lead.phone == "+79161234567"
    assert lead.responsible == alice
    assert lead.activities.get().kind == Activity.Kind.CREATED


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "ivan@", "Enter a valid email address."),
        ("phone_raw", "123", "“123” is not a valid phone number."),
    ],
)
def test_bad_contact_data_is_refused_with_a_clear_message(
    as_alice, lead_form, field, value, message
):
    response = as_alice.post(reverse("admin:crm_lead_add"), lead_form(**{field: value}))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Lead.objects.exists()


def test_editing_the_status_in_the_admin_goes_through_the_status_service(
    as_alice, lead_form, make_lead, alice, status
):
    lead = make_lead(alice)
    url = reverse("admin:crm_lead_change", args=[lead.pk])

    response = as_alice.post(url, lead_form(status=status("nurturing").pk, title="Renamed"))

    assert response.status_code == 302
    lead.refresh_from_db()
    assert (lead.title, lead.status.code) == ("Renamed", "nurturing")
    change = lead.activities.get(kind=Activity.Kind.STATUS_CHANGE)
    assert change.payload["to"] == "nurturing"
    assert change.actor == alice


def test_the_timeline_is_shown_read_only_on_the_lead(as_alice, make_lead, alice):
    lead = make_lead(alice)

    page = as_alice.get(reverse("admin:crm_lead_change", args=[lead.pk])).content.decode()

    assert "Lead created" in page
    assert 'name="activities-0-summary"' not in page


def status_changes(lead, alice, count):
    for n in range(count):
        crm_services.change_status(lead, "in_progress" if n % 2 == 0 else "new", by=alice)


@pytest.mark.parametrize(
    "page",
    [
        lambda lead: reverse("admin:crm_lead_change", args=[lead.pk]),
        lambda lead: reverse("admin:crm_activity_changelist"),
    ],
    ids=["lead page timeline", "activity list"],
)
def test_status_changes_are_named_with_the_same_queries_however_many(
    as_alice, make_lead, alice, page
):
    lead = make_lead(alice)
    status_changes(lead, alice, 2)
    as_alice.get(page(lead))  # the first request fills per-process caches (content types)
    with CaptureQueriesContext(connection) as short:
        as_alice.get(page(lead))

    status_changes(lead, alice, 6)
    with CaptureQueriesContext(connection) as long:
        html = as_alice.get(page(lead)).content.decode()

    assert "Status: New → In progress" in html
    assert "Status: In progress → New" in html
    assert len(long) == len(short)


def test_the_move_to_status_action_asks_for_the_status_then_moves(
    as_alice, make_lead, alice, status
):
    leads = [make_lead(alice, email=f"l{n}@example.com") for n in range(3)]
    url = reverse("admin:crm_lead_changelist")
    chosen = {"action": "move_to_status", "_selected_action": [lead.pk for lead in leads[:2]]}

    question = as_alice.post(url, chosen)
    answer = as_alice.post(url, {**chosen, "apply": "1", "status": "nurturing"}, follow=True)

    assert "New status" in question.content.decode()
    assert "2 leads moved to “Nurturing”." in answer.content.decode()
    assert [Lead.objects.get(pk=lead.pk).status.code for lead in leads] == [
        "nurturing",
        "nurturing",
        "new",
    ]


def test_the_admin_speaks_russian(as_alice, make_lead, alice):
    make_lead(alice, status_code="nurturing")

    page = as_alice.get(
        reverse("admin:crm_lead_changelist"), headers={"accept-language": "ru"}
    ).content.decode()

    assert "Дожимаем лида" in page
    assert "Перевести в статус…" in page


def test_a_new_manager_set_in_the_admin_is_a_reassignment(
    client, olga, alice, bob, lead_form, make_lead, status
):
    lead = make_lead(alice)
    due = lead.created_at
    task = crm_services.create_task(lead, "Call back", due, alice, by=alice)
    client.force_login(olga)
    url = reverse("admin:crm_lead_change", args=[lead.pk])

    response = client.post(url, lead_form(responsible=bob.pk, status=status("new").pk))

    assert response.status_code == 302
    lead.refresh_from_db()
    task.refresh_from_db()
    assert lead.responsible == bob and task.assigned_to == bob
    entry = lead.activities.get(kind=Activity.Kind.REASSIGNED)
    assert (entry.actor, entry.payload["to"]) == (olga, bob.pk)


def test_a_lead_with_a_manager_cannot_be_left_without_one_in_the_admin(
    client, olga, alice, lead_form, make_lead
):
    lead = make_lead(alice)
    client.force_login(olga)

    response = client.post(
        reverse("admin:crm_lead_change", args=[lead.pk]), lead_form(responsible="")
    )

    assert response.status_code == 200 and "errorlist" in response.content.decode()
    lead.refresh_from_db()
    assert lead.responsible == alice


def test_the_lead_page_shows_the_newest_50_entries_and_links_to_the_card(
    client, olga, alice, make_lead
):
    lead = make_lead(alice)
    crm_services.add_activities(
        crm_services.new_activity(lead, Activity.Kind.NOTE, f"Note {n}", actor=alice)
        for n in range(60)
    )
    client.force_login(olga)

    page = client.get(reverse("admin:crm_lead_change", args=[lead.pk])).content.decode()

    assert page.count('<tr class="form-row') == 50
    card = reverse("crm:lead_detail", args=[lead.pk])
    assert f'href="{card}" class="viewsitelink"' in page
