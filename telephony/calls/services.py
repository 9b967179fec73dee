"""Every write on calls: PBX events folded into Call rows, in whatever order they arrive; the
lead a call is about; its entry on the lead's timeline; the missed-call notice; the lead a
person chooses for a call; and the calls the CRM places itself.

Nothing else creates or changes a Call row (the agent state a call moves is in `agents`).
"""

import uuid

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from crm import services as crm_services
from crm.models import Activity, Lead, Profile
from crm.phones import to_e164
from telephony.calls import agents
from telephony.calls.events import CRM, CRM_CALL_PREFIX, CallEventData
from telephony.models import Call, CallEvent, InboundContact
from telephony.services import record_inbound_contact

# The state a call is in after each kind of event, until it ends.
STATE_AFTER = {
    "call.ringing": Call.State.RINGING,
    "call.answered": Call.State.ANSWERED,
    "call.resumed": Call.State.ANSWERED,
    "call.held": Call.State.ON_HOLD,
    "call.transferred": Call.State.TRANSFERRED,
}


def apply_event(source: str, event: CallEventData, *, lead_id: int | None = None) -> Call | None:
    """Store `event` and fold it into its call; None when this event was already applied.

    `lead_id` is the lead the call is about when the caller knows it (a call the CRM placed
    carries it), even if several leads share the number: a call with no lead yet gets it before
    the event is folded in. The id of a lead that is gone is ignored."""
    if lead_id is not None and not Lead.objects.filter(pk=lead_id).exists():
        lead_id = None
    with transaction.atomic():
        try:
            with transaction.atomic():
                stored = CallEvent.objects.create(
                    source=source,
                    event_id=event.event_id,
                    type=event.type,
                    occurred_at=event.occurred_at,
                    payload=event.raw,
                )
        except IntegrityError:
            return None
        call = _locked_call(source, event, lead_id)
        _fold(call, event)
        call.received_at = timezone.now()
        call.save()
        stored.call = call
        stored.save(update_fields=["call"])
        _follow_up(call, event)
    return call


def place_outbound_call(manager, lead: Lead, extension: str, number: str) -> Call:
    """The call the CRM is about to place from `manager`'s `extension` to `lead`'s `number`:
    outbound, ringing, on that lead's timeline (whoever else shares the number)."""
    call_id = f"{CRM_CALL_PREFIX}{uuid.uuid4().hex}"
    placed = CallEventData(
        event_id=f"{call_id}:placed",
        type="call.ringing",
        call_id=call_id,
        occurred_at=timezone.now(),
        direction=Call.Direction.OUTBOUND,
        from_number=extension,
        to_number=number,
        extension=extension,
        raw={"placed_by": manager.pk, "lead": lead.pk},
    )
    return apply_event(CRM, placed, lead_id=lead.pk)


def end_unplaced_call(call: Call, reason: str) -> Call:
    """The PBX would not place `call`: it ends at once, with `reason` as its hang-up cause."""
    return apply_event(
        call.source,
        CallEventData(
            event_id=f"{call.call_id}:not-placed",
            type="call.ended",
            call_id=call.call_id,
            occurred_at=timezone.now(),
            hangup_cause=reason[: Call._meta.get_field("hangup_cause").max_length],
        ),
    )


@transaction.atomic
def choose_lead(call: Call, lead: Lead) -> bool:
    """Settle a call whose number several leads share on `lead`, one of its candidates: the
    call goes on that lead's timeline as if it had been matched at once (an incoming call also
    tells the responsible manager and takes a nurtured lead back to "in progress").

    Returns False and changes nothing when the call already has a lead."""
    locked = Call.objects.select_for_update().get(pk=call.pk)
    if locked.lead_id is not None:
        return False
    if not locked.candidate_leads.filter(pk=lead.pk).exists():
        raise ValidationError(
            _("%(lead)s is not one of the possible leads of this call.") % {"lead": lead},
            code="not_a_candidate",
        )
    locked.lead = lead
    locked.save(update_fields=["lead"])
    _record_on_timeline(locked)  # the same entry apply_event makes for a matched call
    call.lead, call.activity_id = lead, locked.activity_id
    return True


def _locked_call(source: str, event: CallEventData, lead_id: int | None) -> Call:
    calls = Call.objects.select_for_update()
    call = calls.filter(source=source, call_id=event.call_id).first()
    if call is None:
        # A call whose lead is known before any event says so is one the CRM placed: outbound.
        direction = Call.Direction.OUTBOUND if lead_id else Call.Direction.INBOUND
        try:
            with transaction.atomic():
                return Call.objects.create(
                    source=source,
                    call_id=event.call_id,
                    direction=event.direction or direction,
                    state=Call.State.RINGING,
                    started_at=event.occurred_at,
                    last_event_at=event.occurred_at,
                    lead_id=lead_id,
                )
        except IntegrityError:  # another event of the same call created it a moment ago
            call = calls.get(source=source, call_id=event.call_id)
    if call.lead_id is None and lead_id is not None:
        call.lead_id = lead_id
    return call


def _fold(call: Call, event: CallEventData) -> None:
    at = event.occurred_at
    call.started_at = min(call.started_at, at)
    if event.direction:
        call.direction = event.direction
    if event.from_number and not call.from_raw:
        call.from_raw, call.from_e164 = event.from_number, to_e164(event.from_number) or ""
    if event.to_number and not call.to_raw:
        call.to_raw, call.to_e164 = event.to_number, to_e164(event.to_number) or ""
    if event.line and not call.line:
        call.line = event.line
    if event.extension and (event.type == "call.answered" or not call.extension):
        call.extension = event.extension
        call.agent = _manager_for_extension(event.extension) or call.agent
    if event.type == "call.answered":
        call.answered_at = min(call.answered_at or at, at)
    if event.type == "call.transferred" and event.transfer_to:
        call.transferred_to = event.transfer_to
    if event.type == "call.recording_ready" and event.recording_url:
        call.recording_url = event.recording_url
    if event.type == "call.ended":
        call.ended_at = at
        call.hangup_cause = event.hangup_cause or call.hangup_cause
        if event.duration is not None:
            call.duration, call.duration_from_pbx = event.duration, True
    if event.type in STATE_AFTER and at >= call.last_event_at and not call.ended_at:
        call.state = STATE_AFTER[event.type]
    call.last_event_at = max(call.last_event_at, at)
    if call.ended_at:
        # Ended calls are final, whatever arrives late; only the facts get filled in.
        call.state = Call.State.ENDED if call.answered_at else Call.State.MISSED
        if not call.duration_from_pbx:
            call.duration = int((call.ended_at - call.started_at).total_seconds())
        if call.answered_at:
            call.talk_time = max(0, int((call.ended_at - call.answered_at).total_seconds()))
    if call.lead_id is None and call.direction != Call.Direction.INTERNAL:
        _match_lead(call)


def _manager_for_extension(extension: str):
    profile = Profile.objects.select_related("user").filter(extension=extension).first()
    return profile.user if profile else None


def _match_lead(call: Call) -> None:
    number = call.lead_number
    if not number:
        return
    leads = list(Lead.objects.filter(phone=number).order_by("-updated_at")[:10])
    if len(leads) == 1:
        call.lead = leads[0]
    elif leads and call.pk:
        call.candidate_leads.set(leads)


def _follow_up(call: Call, event: CallEventData) -> None:
    """What a call means for the lead, the timeline and the manager; each happens once."""
    if call.lead_id:
        _record_on_timeline(call)
    if call.agent_id:
        agents.follow_call(call.agent, call)
    if call.state == Call.State.MISSED and not call.missed_call_notified:
        _notify_missed(call)


def _record_on_timeline(call: Call) -> None:
    lead = call.lead
    payload = {
        "call": call.pk,
        "direction": call.direction,
        "state": call.state,
        "number": call.lead_number,
        "talk_time": call.talk_time,
    }
    if call.activity_id:
        Activity.objects.filter(pk=call.activity_id).update(payload=payload)
        return
    if call.direction == Call.Direction.INBOUND:
        activity = record_inbound_contact(
            lead,
            InboundContact.Channel.CALL,
            f"{call.source}:{call.call_id}",
            at=call.started_at,
            summary=gettext_noop("Incoming call"),
            payload=payload,
        )
    else:
        activity = crm_services.record_activity(
            lead,
            Activity.Kind.CALL,
            gettext_noop("Outgoing call"),
            actor=call.agent,
            payload=payload,
            at=call.started_at,
        )
    if activity is not None:
        call.activity = activity
        call.save(update_fields=["activity"])


def _notify_missed(call: Call) -> None:
    if call.direction != Call.Direction.INBOUND:
        return
    lead = call.lead
    who = (lead.responsible if lead else None) or call.agent
    if who is None:
        return
    crm_services.notify(
        who,
        gettext_noop("Missed call from %(caller)s: call back."),
        {"caller": lead.display_name if lead else call.from_raw},
        lead=lead,
    )
    call.missed_call_notified = True
    call.save(update_fields=["missed_call_notified"])
