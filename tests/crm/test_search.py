import pytest
from django.db import connection

from crm.models import Lead
from crm.selectors import search_leads
from tests.plans import plan_of


@pytest.fixture
def leads(make_lead, alice):
    """Иван Петров of «Ромашка», Ivan Smirnov, and Анна Петрова with Ёлка in her title."""
    return {
        "petrov": make_lead(
            alice,
            first_name="Иван",
            last_name="Петров",
            email="petrov@romashka.example",
            phone_raw="8 (916) 123-45-67",
            title="Сайт магазина",
            company="ООО «Ромашка»",
        ),
        "smirnov": make_lead(
            alice,
            first_name="Ivan",
            last_name="Smirnov",
            email="ivan@smirnov.example",
            phone_raw="+7 903 555-00-11",
            title="Online shop",
            company="Smirnov & Sons",
        ),
        "petrova": make_lead(
            alice,
            first_name="Анна",
            last_name="Петрова",
            email="anna@elka.example",
            title="Ёлочные игрушки",
        ),
    }


def found(term) -> set[str]:
    return set(search_leads(Lead.objects.all(), term).values_list("last_name", flat=True))


@pytest.mark.parametrize("term", ["иван петров", "Петров Иван", "ПЕТРОВ ИВАН", "  иВаН   пЕтРоВ "])
def test_a_full_name_is_found_in_any_case_and_order_of_its_words(leads, term):
    assert found(term) == {"Петров"}


def test_one_word_in_capitals_finds_every_lead_containing_it(leads):
    assert found("ПЕТРОВ") == {"Петров", "Петрова"}
    assert found("IVAN") == {"Smirnov"}


def test_every_word_must_match_somewhere(leads):
    assert found("иван ромашка") == {"Петров"}
    assert found("иван магазин") == {"Петров"}
    assert found("иван smirnov") == set()


def test_yo_and_ye_are_the_same_letter(leads):
    assert found("елочные") == {"Петрова"}
    assert found("ЁЛОЧНЫЕ") == {"Петрова"}


@pytest.mark.parametrize(
    "typed", ["8 (916) 123-45-67", "+7 916 123 45 67", "89161234567", "+79161234567", "9161234567"]
)
def test_a_phone_is_found_in_any_format(leads, typed):
    assert found(typed) == {"Петров"}


@pytest.mark.parametrize(
    "typed, whose",
    [
        ("123-45", "Петров"),
        ("555 00 11", "Smirnov"),
        ("90355", "Smirnov"),
        ("8 916 123", "Петров"),
        ("+7 903 555", "Smirnov"),
    ],
)
def test_a_phone_is_found_by_five_or_more_of_its_digits(leads, typed, whose):
    assert found(typed) == {whose}


def test_an_email_is_found_whole_in_any_case_or_by_part(leads):
    assert found("IVAN@SMIRNOV.EXAMPLE") == {"Smirnov"}
    assert found(" ivan@smirnov.example ") == {"Smirnov"}
    assert found("romashka.example") == {"Петров"}
    assert found("n@smirnov.exa") == {"Smirnov"}


def test_a_whole_address_finds_that_address_not_others_containing_it(leads, make_lead, alice):
    make_lead(alice, last_name="Ivanov", email="x.ivan@smirnov.example")

    assert found("ivan@smirnov.example") == {"Smirnov"}
    assert found("ivan@smirnov") == {"Smirnov", "Ivanov"}


def test_title_and_company_are_found_in_any_case(leads):
    assert found("ONLINE") == {"Smirnov"}
    assert found("сайт") == {"Петров"}
    assert found("«РОМАШКА»") == {"Петров"}
    assert found("sons") == {"Smirnov"}


def test_an_empty_term_finds_everything_and_a_stranger_nothing(leads):
    assert found("   ") == {"Петров", "Smirnov", "Петрова"}
    assert found("Сидоров") == set()


def test_the_search_text_follows_an_edit(leads):
    lead = leads["smirnov"]
    lead.last_name = "Кузнецов"
    lead.save(update_fields=["last_name"])

    assert found("кузнецов") == {"Кузнецов"}
    assert found("smirnov") == {"Кузнецов"}  # still in the email and company


def test_the_admin_finds_a_lead_by_its_name_in_another_order(client, leads, alice):
    client.force_login(alice)

    page = client.get("/admin/crm/lead/", {"q": "ПЕТРОВ иван"}).content.decode()

    assert "Сайт магазина" in page
    assert "Ёлочные игрушки" not in page


@pytest.mark.postgres
@pytest.mark.django_db
def test_on_postgresql_the_search_reads_the_trigram_indexes():
    if connection.vendor != "postgresql":
        pytest.skip("the trigram indexes are PostgreSQL's")
    queryset = search_leads(Lead.objects.order_by(), "петров 8 916 123")
    plan = plan_of(*queryset.query.sql_with_params())

    assert "lead_search_text_trgm_idx" in plan
    assert "lead_phone_trgm_idx" in plan


@pytest.mark.postgres
@pytest.mark.django_db
def test_on_postgresql_a_whole_address_reads_the_email_index(make_lead, alice):
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    make_lead(alice, email="ivan@gmail.com")
    queryset = search_leads(Lead.objects.order_by(), "Ivan@Gmail.com")
    plan = plan_of(*queryset.query.sql_with_params())

    assert "crm_lead_email" in plan and "trgm" not in plan
