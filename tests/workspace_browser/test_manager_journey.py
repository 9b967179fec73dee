"""A manager's day in a real browser, in English and in Russian: she signs in, finds a lead by
a phone typed differently, notes, plans, nurtures; the lead calls, the screen pops, nurturing
stops and Today shows it; she moves the lead on the pipeline with the keyboard only."""

import pytest
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from crm.models import Lead, LeadStatus, Notification
from crm.templatetags.crm_workspace import lead_time
from nurture.selectors import planned_sends, step_description
from tests.workspace_browser.conftest import screenshot

pytest_plugins = ["tests.browser"]  # chromium, expect
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

POP_BUDGET = 2_000  # ms: the card shows (or goes) within two seconds of the PBX's event
MAX_TABS = 200  # no page here has that many stops: the loop ends even if the select is missing


@pytest.fixture
def ivan(make_lead, alice, bob):
    """Ivan, alice's new lead, who lives two hours east of Moscow; another lead of hers with
    another phone; and bob's lead."""
    make_lead(alice, first_name="Anna", last_name="Sokolova", phone_raw="+7 903 555-00-11")
    make_lead(bob, first_name="Boris", last_name="Orlov", phone_raw="+7 926 777-88-99")
    return make_lead(
        alice,
        first_name="Ivan",
        last_name="Petrov",
        title="Shop",
        email="ivan@client.example",
        phone_raw="8 (916) 123-45-67",
        time_zone="Asia/Yekaterinburg",
    )


@pytest.fixture(params=["en", "ru"])
def language(request):
    with translation.override(request.param), timezone.override("Europe/Moscow"):
        yield request.param


def status_name(code: str) -> str:
    return LeadStatus.objects.get(code=code).name


def region(page, heading: str):
    return page.get_by_role("region", name=heading, exact=True)


def test_a_manager_works_a_lead_from_search_to_the_pipeline(
    language, ivan, alice, open_page, pbx_event, expect
):
    page = open_page(language=language)
    page.goto(reverse("crm:today"))

    # Sign in through the form; the page is in the browser's language.
    expect(page.locator("html")).to_have_attribute("lang", language)
    page.locator("#id_username").fill("alice")
    page.locator("#id_password").fill("pw")
    page.get_by_role("button", name=_("Sign in")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(_("Today"))

    # Find Ivan by his phone typed another way.
    page.get_by_role("navigation").get_by_role("link", name=_("Leads"), exact=True).click()
    page.get_by_label(_("Search")).fill("+7 916 1234567")
    page.get_by_label(_("Search")).press("Enter")
    results = page.locator("#results tbody tr")
    expect(results).to_have_count(1)
    results.get_by_role("link", name="Ivan Petrov").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Ivan Petrov")
    screenshot(page, f"journey-{language}-card")

    # A note (htmx puts it on the timeline) and a next step for tomorrow.
    note = {"en": "Wants the shop live by March.", "ru": "Хочет запустить магазин к марту."}
    page.get_by_label(_("Add a note")).fill(note[language])
    page.get_by_role("button", name=_("Add note")).click()
    expect(page.locator("#timeline")).to_contain_text(note[language])
    task = {"en": "Send the offer", "ru": "Отправить предложение"}[language]
    page.get_by_label(_("What to do")).fill(task)
    page.get_by_role("button", name=_("Tomorrow 10:00")).click()
    expect(region(page, _("Next steps"))).to_contain_text(task)

    # Nurturing: the planned dates, at Ivan's time and at hers.
    statuses = page.locator(".status-buttons")
    statuses.get_by_role("button", name=status_name("nurturing"), exact=True).click()
    expect(page.locator("h1 .status")).to_have_text(status_name("nurturing"))
    enrollment = ivan.enrollments.select_related("sequence", "lead").get()
    nurturing = region(page, _("Nurturing"))
    expect(nurturing).to_contain_text(step_description(enrollment))
    for send in planned_sends(enrollment):
        planned = _("Email %(number)s") % {"number": send.number}
        expect(nurturing).to_contain_text(f"{planned}: {lead_time(send.at, ivan)}")

    # Ivan calls: his card pops on her page; she answers; the call ends and the card goes.
    pop = page.locator(".screen-pop-card")
    pbx_event("call.ringing")
    expect(pop).to_be_visible(timeout=POP_BUDGET)
    expect(pop.locator(".screen-pop-name")).to_have_text("Ivan Petrov")
    expect(pop).to_contain_text(_("Incoming call"))
    screenshot(page, f"journey-{language}-screen-pop")
    pbx_event("call.answered")
    expect(pop).to_contain_text(_("Call in progress"), timeout=POP_BUDGET)
    pbx_event("call.ended", duration=95)
    expect(pop).to_have_count(0, timeout=POP_BUDGET)

    # The call moved him to In progress and stopped nurturing.
    page.reload()
    expect(page.locator("h1 .status")).to_have_text(status_name("in_progress"))
    enrollment.refresh_from_db()
    assert enrollment.state == enrollment.State.HALTED
    expect(region(page, _("Nurturing"))).to_contain_text(step_description(enrollment))

    # Today: Ivan stopped by his call, the next step, the notification.
    page.get_by_role("navigation").get_by_role("link", name=_("Today"), exact=True).click()
    expect(region(page, _("They answered: nurturing stopped"))).to_contain_text("Ivan Petrov")
    expect(region(page, _("My next steps"))).to_contain_text(f"{task}: Ivan Petrov")
    notification = Notification.objects.filter(user=alice, lead=ivan).latest("pk")
    expect(region(page, _("Unread notifications"))).to_contain_text(notification.text)
    screenshot(page, f"journey-{language}-today")

    # The pipeline, with the keyboard only: Tab to Ivan's "Move to", choose, press Move.
    page.goto(reverse("crm:pipeline"))
    select_id = f"move-{ivan.pk}"
    for _tab in range(MAX_TABS):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == select_id:
            break
    else:
        pytest.fail(f"Tab never reached #{select_id}")
    codes = list(LeadStatus.objects.order_by("order").values_list("code", flat=True))
    for _step in range(codes.index("converted") - codes.index("in_progress")):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    expect(page.locator(f"#{select_id} + button")).to_be_focused()
    page.keyboard.press({"en": "Enter", "ru": "Space"}[language])

    moved = _("%(lead)s moved to “%(status)s”.") % {
        "lead": "Ivan Petrov",
        "status": status_name("converted"),
    }
    expect(page.locator("#pipeline-announcer")).to_have_text(moved)
    expect(page.locator(f".column[data-status=converted] [data-lead='{ivan.pk}']")).to_be_visible()
    expect(page.locator(f"#{select_id}")).to_be_focused()
    assert Lead.objects.get(pk=ivan.pk).status.code == "converted"
