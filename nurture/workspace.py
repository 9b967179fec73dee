"""nurture's part of the manager workspace (through crm's hooks): the lead card's nurture
panel, the nurture line in lead lists, and Today's leads whose emails all went unanswered."""

from django.db.models import Exists, OuterRef, Subquery
from django.dispatch import receiver
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm import lead_page, menu, today
from crm import selectors as crm_selectors
from crm.forms import ChoiceField
from crm.models import Activity, LeadStatus
from nurture import selectors
from nurture.models import Enrollment, OutboundMessage

SHOWN_ON_TODAY = 10


@receiver(menu.workspace_menu, dispatch_uid="nurture.workspace.menu")
def nurturing_in_the_menu(sender, request, **kwargs):
    return menu.MenuItem(gettext("Nurturing"), reverse("nurturing:overview"), 40)


@receiver(lead_page.lead_panels, dispatch_uid="nurture.workspace.card_panel")
def nurture_panel_on_the_card(sender, request, lead, page=lead_page.ADMIN, **kwargs):
    if page != lead_page.CARD or lead is None:
        return None
    enrollments = list(
        Enrollment.objects.filter(lead=lead)
        .select_related("sequence", "lead")
        .prefetch_related("messages")
        .order_by("-enrolled_at")[:5]
    )
    shown = [
        {
            "enrollment": enrollment,
            "step": selectors.step_description(enrollment),
            "sends": selectors.planned_sends(enrollment),
            "can_restart": enrollment.sequence.enrolling_status_id == lead.status_id,
        }
        for enrollment in enrollments
    ]
    suppression = selectors.active_suppression(lead.email)
    return lead_page.LeadPanel(
        "nurture",
        order=10,
        card_template="nurture/card_panel.html",
        context={
            "enrollments": shown,
            "suppression": suppression,
            "is_nurturing": lead.status.code == LeadStatus.NURTURING,
        },
    )


@receiver(lead_page.lead_row_notes, dispatch_uid="nurture.workspace.row_notes")
def nurture_step_in_lists(sender, request, leads, **kwargs):
    active = Enrollment.objects.filter(
        lead__in=leads, state=Enrollment.State.ACTIVE
    ).select_related("sequence")
    return {enrollment.lead_id: selectors.step_description(enrollment) for enrollment in active}


@receiver(today.today_panels, dispatch_uid="nurture.workspace.today")
def unanswered_on_today(sender, request, **kwargs):
    """Leads still in Nurturing whose emails all went and who never answered: the manager
    decides what comes next."""
    first = Enrollment.objects.filter(
        lead__responsible=request.user,
        state=Enrollment.State.COMPLETED,
        lead__status=crm_selectors.status_by_code(LeadStatus.NURTURING),
    ).order_by("ended_at")[:SHOWN_ON_TODAY]
    # The first ones found by id alone (the leads' index), then only their rows read.
    finished = (
        Enrollment.objects.filter(pk__in=first.values("pk"))
        .select_related("lead", "sequence")
        .order_by("ended_at", "pk")
    )
    return today.TodayPanel(
        "nurture", "nurture/today_unanswered.html", order=30, context={"finished": finished}
    )


@receiver(lead_page.timeline_details, dispatch_uid="nurture.workspace.email_texts")
def email_texts_on_the_timeline(sender, request, entries, **kwargs):
    """An email out shows what it said."""
    by_message = {
        entry.payload.get("message"): entry.pk
        for entry in entries
        if entry.kind == Activity.Kind.EMAIL_OUT and entry.payload.get("message")
    }
    if not by_message:
        return {}
    texts = OutboundMessage.objects.filter(pk__in=by_message).values_list("pk", "body_text")
    return {by_message[pk]: lead_page.EntryDetail(text=text) for pk, text in texts if text}


NURTURE_STATES = [
    ("", _("Any")),
    ("active", _("Being nurtured")),
    ("completed", _("All emails sent")),
    ("halted", _("Stopped")),
    ("never", _("Never nurtured")),
]


def _by_nurture_state(leads, state):
    if state == "never":
        return leads.exclude(Exists(Enrollment.objects.filter(lead=OuterRef("pk"))))
    latest = Enrollment.objects.filter(lead=OuterRef("pk")).order_by("-enrolled_at", "-pk")
    return leads.annotate(nurture_state=Subquery(latest.values("state")[:1])).filter(
        nurture_state=state
    )


@receiver(lead_page.lead_list_filters, dispatch_uid="nurture.workspace.list_filter")
def nurture_state_filter(sender, request, **kwargs):
    """Leads by where their latest nurturing stands."""
    return lead_page.ListFilter(
        "nurture",
        ChoiceField(label=_("Nurturing"), choices=NURTURE_STATES, required=False),
        _by_nurture_state,
        order=10,
    )
