"""What each manager is doing on the phone (their AgentState row): the writes. Reading it is
`selectors.agent_state`."""

from django.utils import timezone

from telephony.models import AgentState, Call

STATE_FOR_CALL = {
    Call.State.RINGING: AgentState.State.RINGING,
    Call.State.ANSWERED: AgentState.State.BUSY,
    Call.State.ON_HOLD: AgentState.State.ON_HOLD,
    Call.State.TRANSFERRED: AgentState.State.AVAILABLE,
    Call.State.ENDED: AgentState.State.AVAILABLE,
    Call.State.MISSED: AgentState.State.AVAILABLE,
}


def state_of(manager) -> AgentState:
    state, _ = AgentState.objects.get_or_create(user=manager)
    return state


def follow_call(manager, call: Call) -> AgentState:
    """Calls move a manager between available, ringing, busy and on hold; a manager who set
    themselves away stays away."""
    state = state_of(manager)
    wanted = AgentState.State.AWAY if state.away else STATE_FOR_CALL[call.state]
    if state.state != wanted:
        state.state, state.changed_at = wanted, timezone.now()
        state.save(update_fields=["state", "changed_at"])
    return state


def set_away(manager, away: bool) -> AgentState:
    """The manager's own switch, in the CRM: away, or back (to what their call, if one is still
    on, makes them). `pbx.set_away` also tells the PBX."""
    state = state_of(manager)
    state.away = away
    state.state = AgentState.State.AWAY if away else _state_from_calls(manager)
    state.changed_at = timezone.now()
    state.save()
    return state


def _state_from_calls(manager) -> str:
    call = Call.objects.filter(agent=manager).order_by("-started_at", "-id").first()
    if call is None:
        return AgentState.State.AVAILABLE
    if call.state == Call.State.RINGING and (
        call.received_at < timezone.now() - Call.RINGING_WINDOW
    ):
        return AgentState.State.AVAILABLE  # it lost its end event
    return STATE_FOR_CALL[call.state]
