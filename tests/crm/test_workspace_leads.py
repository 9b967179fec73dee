"""The workspace's lead list: whose leads, search, filters, pages, bulk actions."""

import pytest
from django.urls import reverse

from crm import services
from crm.models import Activity, Lead

pytestmark = pytest.mark.django_db


def names_on(page) -> str:
    return page.content.decode()


def test_a_manager_lists_her_own_leads_only(alices_client, alice, bob, make_lead):
    make_lead(alice, first_name="Anna", last_name="Ivanova")
    make_lead(bob, first_name="Boris", last_name="Bakerov")

    page = alices_client.get(reverse("crm:lead_list"))

    assert "Anna Ivanova" in names_on(page)
    assert "Bakerov" not in names_on(page)


def test_a_supervisor_lists_everyones_and_filters_by_manager(client, olga, alice, bob, make_lead):
    make_lead(alice, first_name="Anna", last_name="Ivanova")
    make_lead(bob, first_name="Boris", last_name="Bakerov")
    client.force_login(olga)

    everyone = client.get(reverse("crm:lead_list"))
    bobs = client.get(reverse("crm:lead_list"), {"manager": bob.pk})

    assert "Anna Ivanova" in names_on(everyone) and "Boris Bakerov" in names_on(everyone)
    assert "Boris Bakerov" in names_on(bobs) and "Anna Ivanova" not in names_on(bobs)


@pytest.mark.parametrize(
    "typed", ["иван петров", "ПЕТРОВ", "Петров Иван", "+7 916 123 45 67", "8(916)1234567"]
)
def test_a_lead_is_found_by_name_in_any_case_and_order_or_by_phone_typed_any_way(
    alices_client, alice, make_lead, typed
):
    make_lead(alice, first_name="Иван", last_name="Петров", phone_raw="8 916 123-45-67")
    make_lead(alice, first_name="Пётр", last_name="Сидоров", email="petr@example.com")

    page = alices_client.get(reverse("crm:lead_list"), {"q": typed})

    assert "Иван Петров" in names_on(page)
    assert "Сидоров" not in names_on(page)


def test_a_managers_filter_by_a_colleague_is_not_offered_and_shows_her_own_leads(
    alices_client, alice, bob, make_lead
):
    make_lead(alice, first_name="Anna", last_name="Ivanova")
    make_lead(bob, first_name="Boris", last_name="Bakerov")

    page = alices_client.get(reverse("crm:lead_list"), {"manager": bob.pk})

    assert page.status_code == 200 and 'name="manager"' not in names_on(page)
    assert "Bakerov" not in names_on(page) and "Anna Ivanova" in names_on(page)


def test_a_bad_filter_is_a_400_that_shows_no_leads(alices_client, alice, make_lead):
    make_lead(alice, first_name="Anna", last_name="Ivanova")

    page = alices_client.get(reverse("crm:lead_list"), {"status": "nope"})

    assert page.status_code == 400 and "Anna Ivanova" not in names_on(page)


def test_filters_stay_in_the_page_links(alices_client, alice, make_lead):
    for number in range(30):
        make_lead(alice, first_name=f"Lead{number}", email=f"l{number}@example.com")

    page = alices_client.get(reverse("crm:lead_list"), {"status": "new", "sort": "name"})

    assert "status=new&amp;sort=name&amp;page=2" in names_on(page)


def test_the_list_asks_the_database_as_often_for_600_leads_as_for_30(
    alices_client, alice, make_lead, django_assert_max_num_queries, monkeypatch
):
    monkeypatch.setattr("crm.views.leads.READ_AHEAD", 2)  # both lists are counted
    for number in range(30):
        make_lead(alice, first_name=f"Lead{number}", email=f"a{number}@example.com")
    with django_assert_max_num_queries(12) as few:
        alices_client.get(reverse("crm:lead_list"))
    for number in range(570):
        make_lead(alice, first_name=f"More{number}", email=f"m{number}@example.com")

    with django_assert_max_num_queries(len(few.captured_queries)):
        alices_client.get(reverse("crm:lead_list"))


def test_a_list_that_ends_within_the_ids_read_ahead_is_not_counted_again(
    alices_client, alice, make_lead, django_assert_max_num_queries
):
    for number in range(30):  # more than a page of 25, less than the 1,025 ids read
        make_lead(alice, first_name=f"Lead{number}", email=f"a{number}@example.com")

    with django_assert_max_num_queries(12) as queries:
        page = alices_client.get(reverse("crm:lead_list")).content.decode()

    assert "30 leads" in page and "Page 1 of 2" in page
    assert not any("COUNT(" in query["sql"] and "crm_lead" in query["sql"] for query in queries)


@pytest.fixture
def small_pages(monkeypatch):
    """Pages of 2 leads, counted 5 at a time, so a dozen leads show what 100,000 would."""
    monkeypatch.setattr("crm.views.leads.LEADS_PER_PAGE", 2)
    monkeypatch.setattr("crm.paging.COUNT_CAP", 5)
    monkeypatch.setattr("crm.views.leads.READ_AHEAD", 0)


@pytest.mark.parametrize(
    "page, says, pages, first_row",
    [
        ("1", "More than 5 leads", "Page 1 of more than 2", "Lead00"),
        ("3", "More than 10 leads", "Page 3 of more than 5", "Lead04"),
        ("6", "12 leads", "Page 6 of 6", "Lead10"),
        ("99", "12 leads", "Page 6 of 6", "Lead10"),
        ("x", "More than 5 leads", "Page 1 of more than 2", "Lead00"),
    ],
)
def test_a_long_list_is_counted_only_as_far_as_it_is_paged(
    alices_client, alice, make_lead, small_pages, page, says, pages, first_row
):
    for number in range(12):
        make_lead(
            alice, first_name=f"Lead{number:02}", last_name="X", email=f"p{number}@example.com"
        )

    html = names_on(alices_client.get(reverse("crm:lead_list"), {"sort": "name", "page": page}))

    assert says in html and pages in html
    rows = [name for name in (f"Lead{n:02} X" for n in range(12)) if name in html]
    assert rows[0] == f"{first_row} X" and len(rows) == 2
    assert ('rel="next"' in html) == (pages != "Page 6 of 6")


def test_bulk_moves_the_ticked_leads_through_the_status_service(alices_client, alice, make_lead):
    first, second = make_lead(alice, email="a@example.com"), make_lead(alice, email="b@example.com")

    answer = alices_client.post(
        reverse("crm:lead_bulk"),
        {"leads": [first.pk, second.pk], "status": "junk", "reason": "spam"},
    )

    assert answer.status_code == 302
    assert set(Lead.objects.values_list("status__code", flat=True)) == {"junk"}
    change = Activity.objects.filter(lead=first, kind=Activity.Kind.STATUS_CHANGE).get()
    assert change.payload["reason"] == "spam" and change.actor == alice


def test_bulk_with_one_colleagues_lead_among_them_changes_none(
    alices_client, alice, bob, make_lead
):
    mine, bobs = make_lead(alice, email="a@example.com"), make_lead(bob, email="b@example.com")

    answer = alices_client.post(
        reverse("crm:lead_bulk"), {"leads": [mine.pk, bobs.pk], "status": "junk"}
    )

    assert answer.status_code == 404
    assert set(Lead.objects.values_list("status__code", flat=True)) == {"new"}


def test_a_manager_cannot_give_leads_away_but_a_supervisor_can(client, alice, bob, olga, make_lead):
    lead = make_lead(alice)
    client.force_login(alice)
    client.post(reverse("crm:lead_bulk"), {"leads": [lead.pk], "responsible": bob.pk})
    lead.refresh_from_db()
    assert lead.responsible == alice

    client.force_login(olga)
    client.post(reverse("crm:lead_bulk"), {"leads": [lead.pk], "responsible": bob.pk})

    lead.refresh_from_db()
    assert lead.responsible == bob
    entry = lead.activities.get(kind=Activity.Kind.REASSIGNED)
    assert entry.actor == olga and entry.payload["to"] == bob.pk


def test_leads_are_filtered_by_where_their_nurturing_stands(
    alices_client, alice, make_lead, django_capture_on_commit_callbacks
):
    nurtured = make_lead(alice, first_name="Nina", last_name="Nurtured", email="n@example.com")
    make_lead(alice, first_name="Nick", last_name="Never", email="x@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        services.change_status(nurtured, "nurturing", by=alice)

    active = alices_client.get(reverse("crm:lead_list"), {"nurture": "active"}).content.decode()
    never = alices_client.get(reverse("crm:lead_list"), {"nurture": "never"}).content.decode()

    assert "Nina Nurtured" in active and "Nick Never" not in active
    assert "Nick Never" in never and "Nina Nurtured" not in never
    assert "Email 1 of 6 goes on" in active


def test_the_lists_choices_are_read_by_ordinary_queries_not_a_cursor_each(
    client, olga, alice, make_lead, monkeypatch
):
    # QuerySet.iterator() is a server-side cursor on PostgreSQL: three round trips per select.
    def no_cursor(queryset, *args, **kwargs):
        raise AssertionError(f"{queryset.model.__name__} read through iterator()")

    monkeypatch.setattr("django.db.models.query.QuerySet.iterator", no_cursor)
    make_lead(alice, first_name="Anna", last_name="Ivanova")
    client.force_login(olga)

    page = client.get(reverse("crm:lead_list"))
    card = client.get(reverse("crm:lead_detail", args=[Lead.objects.get().pk]))

    assert "Anna Ivanova" in names_on(page) and f'value="{alice.pk}"' in names_on(page)
    assert card.status_code == 200 and f'value="{alice.pk}"' in names_on(card)
