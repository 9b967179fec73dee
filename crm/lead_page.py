"""What other apps add to a lead's page, without crm ever importing them.

crm owns the lead's page (the admin's lead form, and the workspace's lead card). An app adds
to it by connecting a receiver to `lead_panels`, in the spirit of pretix's plugin signals: the
page sends the signal, and each receiver returns a `LeadPanel` (or None to add nothing here).
Panels are shown in their `order`, whatever order the apps are installed in.
"""

from dataclasses import dataclass, field

from django.dispatch import Signal
from django.template.loader import render_to_string

from crm.models import Lead

# Sent by the lead's page as it is built. Arguments: request, and lead (None on the add form).
lead_panels = Signal()


@dataclass(frozen=True)
class LeadPanel:
    """One app's part of a lead's page."""

    name: str  # the app's, for ordering ties and for debugging
    order: int = 100
    admin_inlines: tuple = ()  # inline classes on the admin's lead form
    template: str = ""  # shown under the page's tools, rendered with `context`
    tools_template: str = ""  # buttons beside the page's own tools (History, ...)
    context: dict = field(default_factory=dict)

    def render(self, template: str, request, lead) -> str:
        return render_to_string(template, {**self.context, "lead": lead}, request=request)


def panels_for(request, lead: Lead | None) -> list[LeadPanel]:
    """The panels every app adds to `lead`'s page for this request, in order. Asked once per
    request and lead: the admin wants them for its inlines several times per page."""
    asked = request.__dict__.setdefault("_lead_panels", {})
    key = lead.pk if lead is not None else None
    if key not in asked:
        responses = lead_panels.send(sender=Lead, request=request, lead=lead)
        panels = [panel for _, panel in responses if panel is not None]
        asked[key] = sorted(panels, key=lambda panel: (panel.order, panel.name))
    return asked[key]
