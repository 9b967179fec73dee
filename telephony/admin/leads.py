"""The lead's page, with telephony (added through crm.lead_page): a Call button (click-to-call),
controls for the lead's calls in progress, and the lead's calls."""

from django.contrib import admin
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _

from crm.admin import ReadOnlyInline
from crm.lead_page import ADMIN, LeadPanel, lead_panels
from crm.models import user_display_name
from telephony.admin.calls import ShownCallDetails
from telephony.calls import pbx, selectors
from telephony.calls.shown import with_hidden_details
from telephony.models import Call


class CallInline(ShownCallDetails, ReadOnlyInline, admin.TabularInline):
    model = Call
    fk_name = "lead"
    fields = [
        "started_at",
        "direction",
        "state",
        "manager",
        "shown_extension",
        "duration",
        "talk_time",
        "shown_transferred_to",
        "hangup_cause",
    ]
    readonly_fields = fields
    show_change_link = True
    ordering = ["-started_at", "-id"]
    verbose_name_plural = _("calls")

    def get_queryset(self, request):
        calls = super().get_queryset(request).select_related("agent__profile")
        return with_hidden_details(request.user, calls)


@receiver(lead_panels, dispatch_uid="telephony.admin.lead_panel")
def calls_on_the_lead_page(sender, request, lead, **kwargs):
    if kwargs.get("page", ADMIN) != ADMIN:
        return None  # the workspace card's panel is in workspace.py
    if lead is None:
        return LeadPanel("telephony", order=20, admin_inlines=(CallInline,))
    live_calls = [
        (
            call,
            user_display_name(call.agent) if call.agent else "",
            "" if call.extension_hidden else call.extension,
        )
        for call in with_hidden_details(request.user, selectors.live_calls_of(lead))
    ]
    return LeadPanel(
        "telephony",
        order=20,
        admin_inlines=(CallInline,),
        tools_template="admin/telephony/lead/call_button.html",
        template="admin/telephony/lead/live_calls.html",
        context={
            "pbx_configured": pbx.is_configured(),
            "pbx_can_control": pbx.can_control_calls(),
            "live_calls": live_calls,
        },
    )
