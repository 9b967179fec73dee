"""The lead page, with telephony: a Call button (click-to-call), controls for the lead's calls
in progress, and the lead's calls.

Extends whichever lead admin is registered by the time this module loads (crm's, or another
app's subclass of it), so the features stack.
"""

from django.contrib import admin
from django.template.loader import select_template
from django.utils.translation import gettext_lazy as _

from crm.admin import ReadOnlyInline
from crm.models import Lead
from telephony import pbx
from telephony.models import Call

BaseLeadAdmin = type(admin.site._registry[Lead])


class CallInline(ReadOnlyInline, admin.TabularInline):
    model = Call
    fk_name = "lead"
    fields = [
        "started_at",
        "direction",
        "state",
        "agent",
        "extension",
        "duration",
        "talk_time",
        "transferred_to",
        "hangup_cause",
    ]
    readonly_fields = fields
    show_change_link = True
    ordering = ["-started_at", "-id"]
    verbose_name_plural = _("calls")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("agent")


admin.site.unregister(Lead)


@admin.register(Lead)
class LeadAdmin(BaseLeadAdmin):
    change_form_template = "admin/telephony/lead/change_form.html"
    inlines = [*BaseLeadAdmin.inlines, CallInline]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["telephony_base_template"] = self._base_change_form_template()
        if obj is not None:
            context["pbx_configured"] = pbx.is_configured()
            context["pbx_can_control"] = pbx.can_control_calls()
            context["live_calls"] = list(
                obj.calls.exclude(state__in=[Call.State.ENDED, Call.State.MISSED])
                .select_related("agent")
                .order_by("-started_at")
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _base_change_form_template(self):
        """The page this one adds to: the lead admin's own, or the admin's usual choice."""
        if BaseLeadAdmin.change_form_template:
            return BaseLeadAdmin.change_form_template
        opts = self.opts
        candidates = [
            f"admin/{opts.app_label}/{opts.model_name}/change_form.html",
            f"admin/{opts.app_label}/change_form.html",
            "admin/change_form.html",
        ]
        return select_template(candidates).template.name
