"""The admin's lead list runs the same queries whatever its length."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.models import Activity, Lead
from crm.services import add_activities, new_activity

ALLOWED_QUERIES = 12  # session, user, permissions, the count, the page, the filters' choices


@pytest.fixture
def leads_with_timelines(make_lead, alice, bob):
    """make(count): alice and bob have `count` leads between them, each with a note."""

    def make(count):
        leads = [
            make_lead(alice if n % 2 else bob, email=f"lead{n}@client.example")
            for n in range(Lead.objects.count(), count)
        ]
        add_activities(
            new_activity(lead, Activity.Kind.NOTE, "Called", actor=lead.responsible)
            for lead in leads
        )

    return make


@pytest.mark.parametrize("who", ["olga", "alice"])
def test_the_lead_list_runs_the_same_queries_for_10_and_60_leads(
    client, leads_with_timelines, olga, alice, who, django_assert_max_num_queries
):
    client.force_login({"olga": olga, "alice": alice}[who])
    url = reverse("admin:crm_lead_changelist")
    leads_with_timelines(10)
    client.get(url)
    with CaptureQueriesContext(connection) as for_ten:
        client.get(url)

    leads_with_timelines(60)
    with django_assert_max_num_queries(ALLOWED_QUERIES):
        page = client.get(url)

    assert page.context["cl"].result_count == (60 if who == "olga" else 30)
    with CaptureQueriesContext(connection) as for_sixty:
        client.get(url)
    assert len(for_sixty) == len(for_ten)


@pytest.mark.parametrize("ordering", ["7", "-7"])  # the last activity column, both ways
def test_the_lead_list_sorts_by_last_activity(client, leads_with_timelines, olga, ordering):
    leads_with_timelines(3)
    client.force_login(olga)

    page = client.get(reverse("admin:crm_lead_changelist"), {"o": ordering})

    shown = [lead.last_activity_at for lead in page.context["cl"].result_list]
    assert shown == sorted(shown, reverse=ordering.startswith("-"))


def test_a_searched_lists_row_links_lead_back_to_the_search_as_djangos_do(
    client, make_lead, olga, alice, monkeypatch
):
    from django.contrib.admin.templatetags import admin_urls
    from django.contrib.admin.templatetags.admin_urls import add_preserved_filters

    lead = make_lead(alice, first_name="Иван", last_name="Петров")
    for number in range(5):
        make_lead(alice, first_name=f"Пётр{number}", last_name="Петров", email=f"{number}@e.ru")
    resolved = []
    real_resolve = admin_urls.resolve
    monkeypatch.setattr(
        admin_urls, "resolve", lambda path: resolved.append(path) or real_resolve(path)
    )
    client.force_login(olga)

    page = client.get(reverse("admin:crm_lead_changelist"), {"q": "петров", "o": "1"})
    monkeypatch.undo()

    assert page.context["cl"].result_count == 6
    assert len(resolved) == 1  # the Add button's; none for each of the six rows

    change = reverse("admin:crm_lead_change", args=[lead.pk])
    djangos = add_preserved_filters(
        {"preserved_filters": page.context["preserved_filters"], "opts": Lead._meta}, change
    )
    assert "_changelist_filters=q%3D" in djangos
    assert f'href="{djangos.replace("&", "&amp;")}"' in page.content.decode()


@pytest.mark.parametrize("script_name", ["", "/crm"])
def test_each_row_links_to_its_own_change_page_reversed_once_a_page(
    client, make_lead, olga, alice, monkeypatch, script_name
):
    from django.contrib.admin.views import main
    from django.urls import clear_script_prefix, set_script_prefix

    leads = [make_lead(alice, first_name=f"Lead{n}", email=f"{n}@e.ru") for n in range(3)]
    reversed_names = []
    real_reverse = main.reverse
    monkeypatch.setattr(
        main, "reverse", lambda name, **kw: reversed_names.append(name) or real_reverse(name, **kw)
    )
    client.force_login(olga)
    lead_list = reverse("admin:crm_lead_changelist")
    set_script_prefix(f"{script_name}/")  # as the WSGI handler does (the test client does not)

    try:
        page = client.get(lead_list)
    finally:
        clear_script_prefix()

    assert reversed_names.count("admin:crm_lead_change") == 1
    for lead in leads:
        assert f'href="{script_name}/admin/crm/lead/{lead.pk}/change/"' in page.content.decode()


@pytest.fixture
def sixty_petrovs(make_lead, alice):
    """60 leads named Петров (and one other), made one after another: the list shows the newest
    first."""
    make_lead(alice, first_name="Анна", last_name="Смирнова", email="other@e.ru")
    return [
        make_lead(alice, first_name=f"Пётр{n}", last_name="Петров", email=f"p{n}@e.ru")
        for n in range(60)
    ]


def searches_in(queries) -> int:
    """How many of `queries` look leads up by their words."""
    return sum('"search_text"' in query["sql"].partition(" WHERE ")[2] for query in queries)


def test_a_searched_first_page_is_searched_once(client, olga, sixty_petrovs):
    client.force_login(olga)
    url = reverse("admin:crm_lead_changelist")

    with CaptureQueriesContext(connection) as queries:
        page = client.get(url, {"q": "петров"})

    cl = page.context["cl"]
    assert cl.result_count == 60
    assert list(cl.result_list) == sixty_petrovs[::-1][:50]
    assert searches_in(queries) == 1
    second = client.get(url, {"q": "петров", "p": "2"}).context["cl"]
    assert list(second.result_list) == sixty_petrovs[::-1][50:]


def test_a_search_that_fits_one_page_shows_all_it_found(client, olga, sixty_petrovs):
    client.force_login(olga)

    page = client.get(reverse("admin:crm_lead_changelist"), {"q": "пётр1"})

    names = sorted(lead.first_name for lead in page.context["cl"].result_list)
    assert names == ["Пётр1", *(f"Пётр1{n}" for n in range(10))]
    assert page.context["cl"].result_count == 11


def test_show_all_of_a_search_shows_all_it_found(client, olga, sixty_petrovs):
    client.force_login(olga)

    page = client.get(reverse("admin:crm_lead_changelist"), {"q": "петров", "all": ""})

    assert list(page.context["cl"].result_list) == sixty_petrovs[::-1]


def test_a_search_longer_than_its_read_ahead_is_counted_in_full(
    client, olga, sixty_petrovs, monkeypatch
):
    from crm.admin import LeadAdmin

    monkeypatch.setattr(LeadAdmin, "READ_AHEAD", 5)
    client.force_login(olga)

    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("admin:crm_lead_changelist"), {"q": "петров"})

    assert page.context["cl"].result_count == 60
    assert list(page.context["cl"].result_list) == sixty_petrovs[::-1][:50]
    assert searches_in(queries) == 2  # the ids (up to the read-ahead) and the count


def test_a_long_list_is_counted_only_so_far_and_says_so(client, olga, sixty_petrovs, monkeypatch):
    monkeypatch.setattr("crm.paging.COUNT_CAP", 10)  # a page of 50: counted to 50, and one more
    client.force_login(olga)
    url = reverse("admin:crm_lead_changelist")

    with CaptureQueriesContext(connection) as queries:
        page = client.get(url, headers={"accept-language": "en"})

    counts = [query["sql"] for query in queries if "COUNT(*)" in query["sql"]]
    assert len(counts) == 1 and "LIMIT 51" in counts[0]
    html = " ".join(page.content.decode().split())
    assert "</a> … Leads: more than 50" in html  # the pages it counted, and no last one
    assert "Select all leads (more than 50)" in html
    assert "More than 50 results" in html
    assert len(page.context["cl"].result_list) == 50
    second = client.get(url, {"p": "2"}, headers={"accept-language": "en"})
    assert len(second.context["cl"].result_list) == 11
    assert "61 leads" in " ".join(second.content.decode().split())  # counted to its end


def test_a_long_list_says_so_in_russian(client, olga, sixty_petrovs, monkeypatch):
    monkeypatch.setattr("crm.paging.COUNT_CAP", 10)
    client.force_login(olga)

    page = client.get(reverse("admin:crm_lead_changelist"), headers={"accept-language": "ru"})

    html = " ".join(page.content.decode().split())
    assert "Лиды: более 50" in html
    assert "Выбрать все лиды (более 50)" in html
    assert "Более 50 результатов" in html


@pytest.mark.django_db
def test_a_capped_lists_page_links_end_with_an_ellipsis_not_a_last_page(make_lead, alice):
    from crm.paging import CappedPaginator

    for _ in range(12):
        make_lead(alice)
    paginator = CappedPaginator(Lead.objects.order_by("pk"), 1, wanted_page=7, cap=3)

    assert (paginator.count, paginator.is_capped) == (10, True)  # counted to 9, and one more
    links = list(paginator.get_elided_page_range(7, on_each_side=2, on_ends=1))
    assert links == [1, "…", 5, 6, 7, 8, 9, "…"]
    assert list(paginator.get_elided_page_range(2, on_each_side=2, on_ends=1)) == [1, 2, 3, 4, "…"]
