"""A supervisor in a real browser: olga sees every manager's leads and filters them by manager."""

import re

import pytest
from django.urls import reverse

from tests.workspace_browser.conftest import screenshot

pytest_plugins = ["tests.browser"]  # chromium, expect
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_olga_sees_everyones_leads_and_filters_them_by_manager(
    olga, alice, bob, make_lead, open_page, expect
):
    make_lead(alice, first_name="Ivan", last_name="Petrov")
    borises = make_lead(bob, first_name="Boris", last_name="Orlov", email="boris@client.example")
    page = open_page(olga)
    page.goto(reverse("crm:lead_list"))

    expect(page.get_by_role("heading", level=1)).to_have_text("All leads")
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Ivan Petrov")).to_contain_text("Alice Manager")
    expect(rows.filter(has_text="Boris Orlov")).to_contain_text("Bob Manager")
    screenshot(page, "supervisor-leads")

    page.get_by_label("Manager").select_option(label="Bob Manager")  # htmx shows the result

    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Boris Orlov")
    expect(page).to_have_url(re.compile(rf"[?&]manager={bob.pk}(&|$)"))  # to bookmark
    rows.get_by_role("link", name="Boris Orlov").click()
    card = reverse("crm:lead_detail", args=[borises.pk])
    expect(page).to_have_url(re.compile(re.escape(card) + "$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Boris Orlov")
