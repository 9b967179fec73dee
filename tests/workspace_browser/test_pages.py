"""Every workspace page, at 1280 px and at 390 px: axe-core finds no serious or critical
violation, the page does not scroll sideways, and its screenshot is written to
tests/browser/screenshots/."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from crm import services
from tests.workspace_browser.conftest import (
    WIDTHS,
    screenshot,
    serious_axe_violations,
    sideways_scroll,
)

pytest_plugins = ["tests.browser"]  # chromium, expect
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# name: (URL name, the world's object it takes or None, signed in as alice?)
PAGES = {
    "today": ("crm:today", None, True),
    "leads": ("crm:lead_list", None, True),
    "lead-card": ("crm:lead_detail", "lead", True),
    "lead-new": ("crm:lead_new", None, True),
    "lead-edit": ("crm:lead_edit", "lead", True),
    "pipeline": ("crm:pipeline", None, True),
    "notifications": ("crm:notification_list", None, True),
    "my-settings": ("my_settings", None, True),
    "password-change": ("password_change", None, True),
    "login": ("login", None, False),
    "password-reset": ("password_reset", None, False),
}
# The pages nurture and telephony serve.
OTHER_APPS_PAGES = {
    "calls": ("calls:log", None, True),
    "calls-report": ("calls:report", None, True),
    "nurturing": ("nurturing:overview", None, True),
    "nurturing-emails": ("nurturing:emails", None, True),
}


@pytest.fixture
def world(nurtured_lead, alice, bob, make_lead):
    """Alice's nurtured lead Ivan, with a note, a next step for tomorrow and a notification;
    a lead of hers not yet contacted; and one of bob's."""
    services.add_note(nurtured_lead, "Asked for a quote for the online shop.", by=alice)
    tomorrow = timezone.now() + timedelta(days=1)
    services.create_task(nurtured_lead, "Send the offer", tomorrow, alice, by=alice)
    services.notify(alice, "A lead of yours needs an answer.", lead=nurtured_lead)
    make_lead(alice, first_name="Мария", last_name="Смирнова", email="maria@client.example")
    make_lead(bob, first_name="Boris", last_name="Orlov", email="boris@client.example")
    return {"lead": nurtured_lead}


@pytest.fixture
def check(world, alice, open_page):
    """check(pages, width, language) -> what is wrong with them at that width in that
    language; screenshots each (named <page>-ru-<width> in Russian). One signed-in page and one
    anonymous page visit them all (a context per page costs time)."""

    def check(pages, width, language):
        signed_in = open_page(alice, language=language, width=width, for_axe=True)
        anonymous = open_page(None, language=language, width=width, for_axe=True)
        problems = []
        for name, (url_name, argument, as_alice) in pages.items():
            url = reverse(url_name, args=[world[argument].pk] if argument else [])
            page = signed_in if as_alice else anonymous
            response = page.goto(url)
            assert response.status == 200, f"{url} answered {response.status}"
            assert page.locator("html").get_attribute("lang") == language
            screenshot(page, name if language == "en" else f"{name}-{language}")
            where = f"{url} at {width} px in {language}"
            if (overflow := sideways_scroll(page)) > 0:
                problems.append(f"{where} scrolls {overflow} px sideways")
            problems += [f"{where}: {issue}" for issue in serious_axe_violations(page)]
        return problems

    return check


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("width", WIDTHS)
def test_every_workspace_page_passes_axe_and_fits_the_width(width, language, check):
    problems = check(PAGES, width, language)

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("name", OTHER_APPS_PAGES)
def test_the_other_apps_pages_pass_axe_and_fit_at_1280_and_390_px(name, language, check):
    pages = {name: OTHER_APPS_PAGES[name]}
    problems = [problem for width in WIDTHS for problem in check(pages, width, language)]

    assert not problems, "\n".join(problems)
