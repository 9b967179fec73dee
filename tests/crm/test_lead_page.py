"""Other apps add to the lead's page through crm.lead_page, never by re-registering its admin."""

from django.contrib import admin
from django.urls import reverse

from crm import admin as crm_admin
from crm.lead_page import LeadPanel, lead_panels, panels_for
from crm.models import Activity, Lead
from nurture.models import Enrollment
from telephony.models import Call


def test_the_lead_admin_is_crms_own_and_every_app_adds_its_panel_in_order(client, alice, make_lead):
    lead = make_lead(alice, phone_raw="8 (916) 123-45-67")
    client.force_login(alice)

    page = client.get(reverse("admin:crm_lead_change", args=[lead.pk]))

    assert type(admin.site._registry[Lead]) is crm_admin.LeadAdmin
    assert [formset.opts.model for formset in page.context["inline_admin_formsets"]] == [
        Activity,
        Enrollment,
        Call,
    ]
    assert "Call +79161234567" in page.content.decode()  # telephony's button, beside History


def test_panels_come_in_their_order_whatever_order_their_apps_connected_in(rf, alice):
    def late(sender, **kwargs):
        return LeadPanel("late", order=30)

    def early(sender, **kwargs):
        return LeadPanel("early", order=5)

    def nothing_here(sender, **kwargs):
        return None

    for receiver in (late, early, nothing_here):
        lead_panels.connect(receiver, weak=False)
    try:
        names = [panel.name for panel in panels_for(rf.get("/"), None)]
    finally:
        for receiver in (late, early, nothing_here):
            lead_panels.disconnect(receiver)

    assert names == ["early", "nurture", "telephony", "late"]
