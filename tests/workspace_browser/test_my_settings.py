"""A manager sets her own time zone on My settings, in Russian at phone width, and the next page
shows her times in it."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from crm import services
from tests.workspace_browser.conftest import screenshot, serious_axe_violations, sideways_scroll

pytest_plugins = ["tests.browser"]  # chromium, expect
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_alice_moves_to_yekaterinburg_and_her_next_step_moves_with_her(
    alice, make_lead, open_page, expect
):
    lead = make_lead(alice, first_name="Ivan", last_name="Petrov")
    tomorrow = (timezone.now() + timedelta(days=1)).date()
    due = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 7, 0, tzinfo=UTC)
    services.create_task(lead, "Позвонить", due, alice, by=alice)
    page = open_page(alice, language="ru", width=390, for_axe=True)
    page.goto(reverse("crm:lead_detail", args=[lead.pk]))
    next_steps = page.get_by_role("region", name="Следующие шаги")
    expect(next_steps).to_contain_text("Позвонить")
    expect(next_steps).to_contain_text("10:00")  # Moscow

    page.goto(reverse("crm:today"))
    page.get_by_role("link", name="Alice Manager").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Мои настройки")
    page.locator("#id_language").select_option("ru")  # (the footer has a language switch too)
    page.get_by_label("Часовой пояс").select_option("Asia/Yekaterinburg")
    screenshot(page, "my-settings-ru-choosing")
    assert sideways_scroll(page) <= 0
    assert not serious_axe_violations(page)
    page.get_by_role("button", name="Сохранить").click()

    expect(page.get_by_role("status")).to_contain_text("Настройки сохранены.")
    expect(page.get_by_label("Часовой пояс")).to_have_value("Asia/Yekaterinburg")
    page.goto(reverse("crm:lead_detail", args=[lead.pk]))
    expect(next_steps).to_contain_text("12:00")  # UTC+5
