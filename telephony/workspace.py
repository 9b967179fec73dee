"""telephony's part of the manager workspace (through crm's hooks): the screen pop on every
page, the lead card's call panel, and Today's missed calls, calls and agent state."""

from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from crm import lead_page, menu, today
from crm.models import Activity
from telephony.calls import pbx, selectors
from telephony.calls.shown import whose, with_hidden_details
from telephony.models import Call

CALLS_ON_THE_CARD = 10
SHOWN_ON_TODAY = 10
# A missed call is to be returned for this long, unless somebody has called the lead since.
MISSED_CALLS_WINDOW = timedelta(days=7)


def _has_phone(user) -> bool:
    profile = getattr(user, "profile", None)
    return bool(profile and profile.extension)


@receiver(menu.workspace_menu, dispatch_uid="telephony.workspace.menu")
def calls_in_the_menu(sender, request, **kwargs):
    if not request.user.has_perm("telephony.view_call"):
        return None
    return menu.MenuItem(gettext("Calls"), reverse("calls:log"), 50)


@receiver(menu.workspace_extras, dispatch_uid="telephony.workspace.screen_pop")
def screen_pop_on_every_page(sender, request, **kwargs):
    if not _has_phone(request.user):
        return None
    return menu.PageExtra(
        head_template="telephony/workspace_head.html",
        header_template="telephony/agent_state_badge.html",
    )


@receiver(lead_page.lead_panels, dispatch_uid="telephony.workspace.card_panel")
def calls_panel_on_the_card(sender, request, lead, page=lead_page.ADMIN, **kwargs):
    if page != lead_page.CARD or lead is None:
        return None
    # The card opens only on a lead the reader may see: nothing of these calls is hidden.
    calls = (
        Call.objects.filter(lead=lead)
        .select_related("agent__profile")
        .order_by("-started_at", "-pk")[:CALLS_ON_THE_CARD]
    )
    return lead_page.LeadPanel(
        "telephony",
        order=20,
        card_template="telephony/card_panel.html",
        context={
            "calls": calls,
            "live_calls": selectors.live_calls_of(lead),
            "pbx_configured": pbx.is_configured(),
        },
    )


@receiver(today.today_panels, dispatch_uid="telephony.workspace.today")
def calls_on_today(sender, request, **kwargs):
    user = request.user
    now = timezone.now()
    called_back = Call.objects.filter(
        lead=OuterRef("lead"),
        direction=Call.Direction.OUTBOUND,
        started_at__gt=OuterRef("started_at"),
    )
    missed = (
        Call.objects.filter(
            lead__responsible=user,
            direction=Call.Direction.INBOUND,
            state=Call.State.MISSED,
            started_at__gte=now - MISSED_CALLS_WINDOW,
        )
        .exclude(Exists(called_back))
        .select_related("lead")
        .order_by("-started_at")[:SHOWN_ON_TODAY]
    )
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    calls_today = list(
        with_hidden_details(
            user,
            Call.objects.filter(agent=user, started_at__gte=midnight).select_related(
                "lead__responsible__profile"
            ),
        ).order_by("-started_at")[:SHOWN_ON_TODAY]
    )
    for call in calls_today:  # a colleague's lead reads "a lead of X", as everywhere
        call.whose = whose(call.lead) if call.lead and call.lead_hidden else ""
    return today.TodayPanel(
        "telephony",
        "telephony/today_calls.html",
        order=20,
        context={
            "missed": missed,
            "calls_today": calls_today,
            "has_phone": _has_phone(user),
            "agent": selectors.agent_state(user) if _has_phone(user) else None,
        },
    )


@receiver(lead_page.timeline_details, dispatch_uid="telephony.workspace.recordings")
def recordings_on_the_timeline(sender, request, entries, **kwargs):
    """A call shows its recording, where the PBX kept one."""
    by_call = {
        entry.payload.get("call"): entry.pk
        for entry in entries
        if entry.kind == Activity.Kind.CALL and entry.payload.get("call")
    }
    if not by_call:
        return {}
    recordings = (
        Call.objects.filter(pk__in=by_call)
        .exclude(recording_url="")
        .values_list("pk", "recording_url")
    )
    return {
        by_call[pk]: lead_page.EntryDetail(link=url, link_label=gettext("Recording"))
        for pk, url in recordings
    }
