"""Reads for the screen pop: the caller's card while a manager's phone rings, and the manager's
own agent state.

Both are polled every second by every open CRM page, so they stay cheap: a single query each
while nothing rings (the common case), a fixed handful while something does, however many calls,
activities or candidate leads there are.
"""

from datetime import datetime
from urllib.parse import urlencode

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Prefetch
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext

from crm.models import Activity, Lead
from crm.selectors import can_see_all_leads, with_status_names
from nurture.models import Enrollment
from telephony.models import AgentState, Call

MAX_CALLS = 5
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


def ringing_calls(user, *, now: datetime | None = None):
    """Calls ringing on `user`'s extension now, newest first, with what their cards need."""
    since = (now or timezone.now()) - Call.RINGING_WINDOW
    return (
        Call.objects.filter(agent=user, state=Call.State.RINGING, received_at__gte=since)
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


def screen_pop(user, *, now: datetime | None = None) -> list[dict]:
    """The cards of the calls ringing on `user`'s extension, as JSON-ready dicts.

    A manager sees the details of their own leads only (supervisors of all); for another
    manager's lead the card says whose it is, so the call can be passed on.
    """
    calls = list(ringing_calls(user, now=now))
    if not calls:
        return []
    card = _CardMaker(user)
    return [card.of(call) for call in calls]


def agent_state(user) -> dict:
    """`user`'s agent state; a manager with no row yet is available (nothing is written)."""
    state = AgentState.objects.filter(user=user).first() or AgentState(user=user)
    return {
        "state": state.state,
        "label": state.get_state_display(),
        "away": state.away,
        "changed_at": state.changed_at.isoformat() if state.pk else None,
    }


class _CardMaker:
    """Builds cards for one user, asking the database only what it has to, once."""

    def __init__(self, user):
        self.user = user
        self._sees_all = None

    def sees(self, lead: Lead) -> bool:
        if lead.responsible_id == self.user.pk:
            return True
        if self._sees_all is None:
            self._sees_all = can_see_all_leads(self.user)
        return self._sees_all

    def of(self, call: Call) -> dict:
        number = call.lead_number
        shown_number = call.from_raw if call.direction == Call.Direction.INBOUND else call.to_raw
        card = {
            "id": call.pk,
            "direction": call.direction,
            "number": shown_number or number,
            "started_at": call.started_at.isoformat(),
            "kind": Kind.UNKNOWN,
            "lead": None,
            "candidates": [],
            "note": "",
            "create_url": "",
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
        elif (number or shown_number) and self.user.has_perm("crm.add_lead"):
            query = urlencode({"phone_raw": number or shown_number})
            card["create_url"] = f"{reverse('admin:crm_lead_add')}?{query}"
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
            "nurture": nurture_step(enrollment) if enrollment else "",
        }

    def candidate(self, lead: Lead) -> dict:
        theirs = lead.responsible is not None and lead.responsible_id != self.user.pk
        return {
            "id": lead.pk,
            "name": lead.full_name or lead.email or lead.phone or lead.title,
            "title": lead.title,
            "company": lead.company,
            "status": lead.status.name,
            "responsible": person(lead.responsible) if theirs else "",  # whose, if not mine
            "url": reverse("admin:crm_lead_change", args=[lead.pk]),
        }

    def hidden_note(self, leads: list[Lead]) -> str:
        owners = sorted({person(lead.responsible) for lead in leads if lead.responsible})
        if not owners:
            return gettext("The caller's lead has no responsible manager; ask a supervisor.")
        return gettext("The caller is a lead of %(managers)s.") % {"managers": ", ".join(owners)}


def nurture_step(enrollment: Enrollment) -> str:
    """Where the lead's nurturing stands: "Email 2 of 6 sent, next on Thu, 27 Nov, 10:00"."""
    values = {"sent": enrollment.sent_count, "total": enrollment.sequence.max_messages}
    if enrollment.state == Enrollment.State.ACTIVE:
        if enrollment.next_send_at is None:
            return gettext("Email %(sent)d of %(total)d sent") % values
        values["when"] = date_format(timezone.localtime(enrollment.next_send_at), SEND_FORMAT)
        if enrollment.sent_count == 0:
            return gettext("Email 1 of %(total)d goes on %(when)s") % values
        return gettext("Email %(sent)d of %(total)d sent, next on %(when)s") % values
    values["when"] = date_format(
        timezone.localtime(enrollment.ended_at or enrollment.enrolled_at), SEND_FORMAT
    )
    if enrollment.state == Enrollment.State.COMPLETED:
        return gettext("Finished on %(when)s: %(sent)d of %(total)d emails sent") % values
    values["reason"] = enrollment.get_halt_reason_display()
    if enrollment.sent_count == 0:
        return gettext("Stopped on %(when)s before the first email: %(reason)s") % values
    return gettext("Stopped on %(when)s after email %(sent)d of %(total)d: %(reason)s") % values


def person(user) -> str:
    try:
        return user.profile.name
    except ObjectDoesNotExist:
        return user.get_full_name() or user.get_username()
