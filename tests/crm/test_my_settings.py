"""A user's own settings page: language, time zone, phone and signature, for themselves only."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from crm import services
from crm.models import Profile

pytestmark = pytest.mark.django_db

SETTINGS = reverse("my_settings")


def saved(**changes):
    return {"language": "", "time_zone": "", "phone": "", "signature": "", **changes}


def test_the_page_shows_ones_own_settings_with_time_zones_by_region(alices_client, alice):
    Profile.objects.filter(user=alice).update(time_zone="Asia/Yekaterinburg")

    page = alices_client.get(SETTINGS).content.decode()

    assert '<option value="Asia/Yekaterinburg" selected>Yekaterinburg (UTC+05:00)' in page
    assert '<optgroup label="Europe">' in page and "The company&#x27;s: Europe/Moscow" in page
    assert "Best regards,\nAlice" in page and "Bob" not in page


def test_a_new_time_zone_applies_to_the_next_page_at_once(alices_client, alice, make_lead):
    lead = make_lead(alice)
    services.create_task(lead, "Call", datetime(2026, 12, 3, 7, 0, tzinfo=UTC), alice, by=alice)

    answer = alices_client.post(SETTINGS, saved(time_zone="America/New_York"), follow=True)

    assert "Your settings are saved." in answer.content.decode()
    assert Profile.objects.get(user=alice).time_zone == "America/New_York"
    card = alices_client.get(reverse("crm:lead_detail", args=[lead.pk])).content.decode()
    assert "02:00" in card.split("Next steps")[1]


def test_a_new_language_applies_at_once_and_to_the_sign_in_page(alices_client, alice):
    answer = alices_client.post(SETTINGS, saved(language="ru"), follow=True)

    assert "Настройки сохранены." in answer.content.decode()
    assert alices_client.cookies["django_language"].value == "ru"
    alices_client.post(SETTINGS, saved(language=""))
    assert Profile.objects.get(user=alice).language == ""
    assert alices_client.cookies["django_language"].value == ""


@pytest.mark.parametrize(
    "field, value",
    [("time_zone", "Mars/Olympus"), ("language", "xx"), ("phone", "1" * 51), ("nothing", None)],
)
def test_a_bad_value_is_a_400_and_nothing_is_saved(alices_client, alice, field, value):
    data = {} if value is None else saved(**{field: value}, signature="Changed")
    answer = alices_client.post(SETTINGS, data)

    assert answer.status_code == 400
    assert 'class="errorlist"' in answer.content.decode()
    assert Profile.objects.get(user=alice).signature == "Best regards,\nAlice"


def test_only_ones_own_profile_changes_whatever_the_form_says(alices_client, alice, bob):
    alices_client.post(
        SETTINGS,
        saved(signature="Alice's", user=bob.pk, extension="202", display_name="Boss"),
    )

    alices, bobs = Profile.objects.get(user=alice), Profile.objects.get(user=bob)
    assert (alices.signature, alices.extension, alices.display_name) == (
        "Alice's",
        "201",
        "Alice Manager",
    )
    assert bobs.signature == "Best regards,\nBob"


def test_signed_out_it_asks_to_sign_in(client):
    answer = client.get(SETTINGS)

    assert answer.status_code == 302 and answer["Location"].startswith(reverse("login"))
