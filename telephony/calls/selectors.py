"""Reads about calls: who may see a call, who may control one, the screen pop (the caller's
card while a manager's phone rings, and its controls during the call) and the manager's own
agent state.

The screen pop and the agent state are polled every second by every open CRM page, so they
stay cheap: a single query each while nothing rings (the common case), a fixed handful while
something does, however many calls, activities or candidate leads there are.
"""

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Prefetch, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext

from crm.models import Activity, Lead, Profile, user_display_name
from crm.selectors import can_see_all_leads, with_status_names
from nurture.models import Enrollment
from nurture.selectors import step_description
from telephony.calls.connectors import Control
from telephony.models import AgentState, Call


def calls_visible_to(user, queryset: QuerySet | None = None) -> QuerySet:
    """Supervisors see every call; a manager the calls of their leads, the calls they took,
    and the calls that may be from one of their leads (for them to choose)."""
    queryset = Call.objects.all() if queryset is None else queryset
    if can_see_all_leads(user):
        return queryset
    candidates = Call.candidate_leads.through.objects.filter(lead__responsible=user)
    # Each part reads an index of its own (PostgreSQL ORs the three), the candidates as ids:
    # as a subquery they would be checked against every call.
    return queryset.filter(
        Q(lead_manager=user, lead__isnull=False)
        | Q(agent=user)
        | Q(pk__in=list(candidates.values_list("call_id", flat=True)))
    )


def controllable_calls(user) -> QuerySet:
    """Calls `user` may hang up or transfer: their own, and those of leads they look after."""
    calls = Call.objects.select_related("lead")
    if can_see_all_leads(user):
        return calls
    return calls.filter(Q(agent=user) | Q(lead__responsible=user))


# --- The screen pop -------------------------------------------------------------------------

MAX_CALLS = 5
# A call in progress whose last event reached the CRM this long ago lost its end event
# somewhere: its card (and its controls) goes.
IN_PROGRESS_WINDOW = timedelta(hours=4)
IN_PROGRESS = (Call.State.ANSWERED, Call.State.ON_HOLD)
RECENT_ACTIVITIES = 5
CANDIDATES = 10
ACTIVITY_FORMAT = "j M, H:i"
SEND_FORMAT = "D, j M, H:i"


class Kind:
    """What the card shows."""

    LEAD = "lead"  # the caller's lead
    CANDIDATES = "candidates"  # several leads share the number: choose one
    UNKNOWN = "unknown"  # no lead has the number: create one
    HIDDEN = "hidden"  # another manager's lead: who, but no details


def live_calls_of(lead: Lead) -> QuerySet:
    """The lead's calls that are not over yet, newest first."""
    return (
        lead.calls.exclude(state__in=[Call.State.ENDED, Call.State.MISSED])
        .select_related("agent__profile")
        .order_by("-started_at", "-id")
    )


def screen_pop_calls(manager, *, now: datetime | None = None):
    """Calls ringing or in progress on `manager`'s extension now, newest first, with what their
    cards need."""
    now = now or timezone.now()
    ringing = Q(state=Call.State.RINGING, received_at__gte=now - Call.RINGING_WINDOW)
    in_progress = Q(state__in=IN_PROGRESS, received_at__gte=now - IN_PROGRESS_WINDOW)
    return (
        Call.objects.filter(ringing | in_progress, agent=manager)
        .exclude(direction=Call.Direction.INTERNAL)
        .select_related("lead__status", "lead__responsible__profile")
        .prefetch_related(
            Prefetch(
                "lead__activities",
                queryset=with_status_names(Activity.objects.order_by("-created_at", "-id"))[
                    :RECENT_ACTIVITIES
                ],
                to_attr="recent_activities",
            ),
            Prefetch(
                "lead__enrollments",
                queryset=Enrollment.objects.select_related("sequence").order_by(
                    "-enrolled_at", "-id"
                )[:1],
                to_attr="latest_enrollments",
            ),
            Prefetch(
                "candidate_leads",
                queryset=Lead.objects.select_related("status", "responsible__profile").order_by(
                    "-updated_at", "-id"
                )[:CANDIDATES],
                to_attr="candidates",
            ),
        )
        .order_by("-started_at", "-id")[:MAX_CALLS]
    )


def screen_pop(manager, *, unsupported: dict, now: datetime | None = None) -> dict:
    """`{"calls": [card, ...], "colleagues": [...]}`: the cards of the calls ringing or in
    progress on `manager`'s extension, as JSON-ready dicts, and during a call the colleagues it
    can be passed to. A call in progress carries its controls (`unsupported`: the controls the
    PBX cannot offer and why, from `pbx.unsupported()`).

    A manager sees the details of their own leads only (supervisors of all); for another
    manager's lead the card says whose it is, so the call can be passed on.
    """
    calls = list(screen_pop_calls(manager, now=now))
    if not calls:
        return {"calls": [], "colleagues": []}
    card = _CardMaker(manager)
    choices = []
    if any(call.state in IN_PROGRESS for call in calls):
        choices = colleague_choices(manager)
    if not choices:
        nobody = gettext("No colleague has a PBX extension to pass the call to.")
        unsupported = {Control.TRANSFER: nobody, Control.ATTENDED_TRANSFER: nobody, **unsupported}
    return {
        "calls": [{**card.of(call), "controls": controls_of(call, unsupported)} for call in calls],
        "colleagues": choices,
    }


def colleagues(manager) -> QuerySet:
    """The colleagues `manager` may pass a call to: active users with a PBX extension."""
    return (
        Profile.objects.filter(user__is_active=True)
        .exclude(extension="")
        .exclude(user=manager)
        .select_related("user")
        .order_by("display_name", "user__username")
    )


def colleague_choices(manager) -> list[dict]:
    """The colleagues as a transfer offers them: their user id and name, nothing else (not
    even their extension: the server looks it up)."""
    return [{"id": profile.user_id, "name": profile.name} for profile in colleagues(manager)]


def controls_of(call: Call, unsupported: dict) -> list[dict]:
    """What the manager can do to `call` from its card, each control enabled or disabled with
    the reason. Every card is of a call on the manager's own extension, which is one
    `controllable_calls` lets them control; a ringing call has no controls yet."""
    if call.state not in IN_PROGRESS:
        return []
    on_hold = call.state == Call.State.ON_HOLD
    off_hold_first = gettext("Take the call off hold first.") if on_hold else ""

    def control(name, label, url, *, target="", confirm="", reason="", pbx_name=None):
        reason = unsupported.get(pbx_name or name) or reason
        return {
            "name": name,
            "label": label,
            "url": url,
            "target": target,  # "colleague" or "party": what the control asks for first
            "confirm": confirm,  # the button that sends it, once the target is chosen
            "enabled": not reason,
            "reason": reason,
        }

    def of_call(url_name):
        return reverse(url_name, args=[call.pk])

    if on_hold:
        hold = control(
            "resume", gettext("Resume"), of_call("telephony:resume"), pbx_name=Control.HOLD
        )
    else:
        hold = control(Control.HOLD, gettext("Hold"), of_call("telephony:hold"))
    return [
        hold,
        control(
            Control.TRANSFER,
            gettext("Transfer"),
            of_call("telephony:transfer"),
            target="colleague",
            confirm=gettext("Transfer now"),
            reason=off_hold_first,
        ),
        control(
            Control.ATTENDED_TRANSFER,
            gettext("Consult, then transfer"),
            of_call("telephony:attended_transfer"),
            target="colleague",
            confirm=gettext("Call them first"),
            reason=off_hold_first,
        ),
        control(
            Control.CONFERENCE,
            gettext("Add a third party"),
            of_call("telephony:conference"),
            target="party",
            confirm=gettext("Call them in"),
        ),
        control(Control.DND, gettext("Do not disturb"), reverse("telephony:agent_state")),
        control(Control.HANGUP, gettext("Hang up"), of_call("telephony:hangup")),
    ]


def agent_state(manager) -> dict:
    """`manager`'s agent state; a manager with no row yet is available (nothing is written)."""
    state = AgentState.objects.filter(user=manager).first() or AgentState(user=manager)
    return {
        "state": state.state,
        "label": state.get_state_display(),
        "away": state.away,
        "changed_at": state.changed_at.isoformat() if state.pk else None,
    }


class _CardMaker:
    """Builds cards for one manager, asking the database only what it has to, once."""

    def __init__(self, manager):
        self.manager = manager
        self._sees_all = None

    def sees(self, lead: Lead) -> bool:
        if lead.responsible_id == self.manager.pk:
            return True
        if self._sees_all is None:
            self._sees_all = can_see_all_leads(self.manager)
        return self._sees_all

    def of(self, call: Call) -> dict:
        number = call.lead_number
        shown_number = call.from_raw if call.direction == Call.Direction.INBOUND else call.to_raw
        card = {
            "id": call.pk,
            "direction": call.direction,
            "state": call.state,
            "number": shown_number or number,
            "started_at": call.started_at.isoformat(),
            "kind": Kind.UNKNOWN,
            "lead": None,
            "candidates": [],
            "note": "",
            "create_url": "",
            "new_url": "",
        }
        if call.lead is not None:
            if self.sees(call.lead):
                card.update(kind=Kind.LEAD, lead=self.lead(call.lead))
            else:
                card.update(kind=Kind.HIDDEN, note=self.hidden_note([call.lead]))
        elif call.candidates:
            visible = [lead for lead in call.candidates if self.sees(lead)]
            hidden = [lead for lead in call.candidates if not self.sees(lead)]
            card["candidates"] = [self.candidate(lead) for lead in visible]
            card["kind"] = Kind.CANDIDATES if visible else Kind.HIDDEN
            card["note"] = self.hidden_note(hidden) if hidden else ""
        elif (number or shown_number) and self.manager.has_perm("crm.add_lead"):
            query = urlencode({"phone_raw": number or shown_number})
            card["create_url"] = f"{reverse('admin:crm_lead_add')}?{query}"
            card["new_url"] = f"{reverse('crm:lead_new')}?{query}"  # the workspace's form
        return card

    def lead(self, lead: Lead) -> dict:
        enrollment = lead.latest_enrollments[0] if lead.latest_enrollments else None
        return {
            **self.candidate(lead),
            "activities": [
                {
                    "when": date_format(timezone.localtime(activity.created_at), ACTIVITY_FORMAT),
                    "text": activity.description,
                }
                for activity in lead.recent_activities
            ],
            "nurture": step_description(enrollment) if enrollment else "",
        }

    def candidate(self, lead: Lead) -> dict:
        theirs = lead.responsible is not None and lead.responsible_id != self.manager.pk
        return {
            "id": lead.pk,
            "name": lead.display_name,
            "title": lead.title,
            "company": lead.company,
            "status": lead.status.name,
            # Whose lead it is, when it is not mine.
            "responsible": user_display_name(lead.responsible) if theirs else "",
            "url": reverse("admin:crm_lead_change", args=[lead.pk]),
            "card_url": reverse("crm:lead_detail", args=[lead.pk]),  # the workspace's card
        }

    def hidden_note(self, leads: list[Lead]) -> str:
        owners = sorted({user_display_name(lead.responsible) for lead in leads if lead.responsible})
        if not owners:
            return gettext("The caller's lead has no responsible manager; ask a supervisor.")
        return gettext("The caller is a lead of %(managers)s.") % {"managers": ", ".join(owners)}
