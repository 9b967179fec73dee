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

# Sent by the lead's page as it is built. Arguments: request, lead (None on the add form), and
# page: ADMIN (the admin's form: admin_inlines, template, tools_template are used) or CARD (the
# workspace's card: card_template), so a receiver computes only what that page shows.
lead_panels = Signal()
ADMIN, CARD = "admin", "card"

# Sent by a list of leads (the workspace's lead list) for the leads on its page, once. Arguments:
# request, leads (a list). Each receiver returns {lead id: a short line} for the leads it has
# something to say about (nurture: "email 3 of 6, next Tue 14 Jan 10:00"), in a fixed number of
# queries whatever the number of leads.
lead_row_notes = Signal()

# Sent by the lead list as it builds its filters. Arguments: request. Each receiver returns a
# ListFilter: a form field (its value in the URL under `name`) and how it narrows the leads.
lead_list_filters = Signal()


@dataclass(frozen=True)
class ListFilter:
    name: str
    field: object  # a django.forms.Field; an empty value filters nothing
    apply: object  # apply(leads queryset, cleaned value) -> queryset
    order: int = 100


# Sent by the lead card for the timeline entries it shows, once. Arguments: request, entries (a
# list of Activity). Each receiver returns {activity id: EntryDetail} for entries of its own
# (nurture: an email's text; telephony: a call's recording), in a fixed number of queries.
timeline_details = Signal()


@dataclass(frozen=True)
class EntryDetail:
    text: str = ""
    link: str = ""  # a URL, shown as a link labelled `link_label`
    link_label: str = ""


@dataclass(frozen=True)
class LeadPanel:
    """One app's part of a lead's page."""

    name: str  # the app's, for ordering ties and for debugging
    order: int = 100
    admin_inlines: tuple = ()  # inline classes on the admin's lead form
    template: str = ""  # the admin's page: shown under its tools, rendered with `context`
    card_template: str = ""  # the workspace's lead card: a panel beside the timeline
    tools_template: str = ""  # buttons beside the page's own tools (History, ...)
    context: dict = field(default_factory=dict)

    def render(self, template: str, request, lead) -> str:
        return render_to_string(template, {**self.context, "lead": lead}, request=request)


def panels_for(request, lead: Lead | None, page: str = ADMIN) -> list[LeadPanel]:
    """The panels every app adds to `lead`'s `page` for this request, in order. Asked once per
    request, lead and page: the admin wants them for its inlines several times per page."""
    asked = request.__dict__.setdefault("_lead_panels", {})
    key = (page, lead.pk if lead is not None else None)
    if key not in asked:
        responses = lead_panels.send(sender=Lead, request=request, lead=lead, page=page)
        panels = [panel for _, panel in responses if panel is not None]
        asked[key] = sorted(panels, key=lambda panel: (panel.order, panel.name))
    return asked[key]


def row_notes_for(request, leads) -> dict[int, list[str]]:
    """What every app says about each of `leads` in a list: {lead id: [line, ...]}."""
    leads = list(leads)
    notes: dict[int, list[str]] = {}
    if not leads:
        return notes
    for _, lines in lead_row_notes.send(sender=Lead, request=request, leads=leads):
        for lead_id, line in (lines or {}).items():
            notes.setdefault(lead_id, []).append(line)
    return notes


def details_for(request, entries) -> dict[int, list]:
    """What every app adds to each of the timeline's `entries`: {activity id: [EntryDetail]}."""
    entries = list(entries)
    details: dict[int, list] = {}
    if not entries:
        return details
    for _, found in timeline_details.send(sender=Lead, request=request, entries=entries):
        for activity_id, detail in (found or {}).items():
            details.setdefault(activity_id, []).append(detail)
    return details


def list_filters_for(request) -> list[ListFilter]:
    found = [item for _, item in lead_list_filters.send(sender=Lead, request=request) if item]
    return sorted(found, key=lambda item: (item.order, item.name))
