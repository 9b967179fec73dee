"""Call control from the CRM: click-to-call, hang up, transfer (blind or attended), hold and
resume, a conference with a third party, and the manager's away switch (do-not-disturb at the
PBX).

The connector is chosen by settings: Asterisk AMI when TELEPHONY_AMI_HOST is set (a short
connection per action), else an HTTP endpoint when TELEPHONY_CLICK_TO_CALL_URL is set (cloud
PBXs: click-to-call only), else none. Whatever cannot be done raises a PBXError whose message
can be shown to the manager as it is; `unsupported()` says beforehand which controls the PBX
cannot offer, and why.

Asterisk sends no Hold event when the CRM holds a call by moving its legs, so a hold or resume
that the PBX accepted is recorded here as the call's own event (`call.held`, `call.resumed`).
"""

import re
import uuid

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.models import Lead, user_display_name
from crm.phones import to_e164
from telephony.calls import agents, selectors, services
from telephony.calls.connectors import AMIConnector, Control, HTTPConnector
from telephony.calls.events import CallEventData
from telephony.calls.pbx_errors import (
    BadExtension,
    BadParty,
    CallOver,
    NoExtension,
    NoPBXConfigured,
    NoPhoneNumber,
    NotAColleague,
    NotInState,
    PBXError,
)
from telephony.models import Call

DIALLABLE_RE = re.compile(r"[0-9*#]{1,20}")
# A third party for a conference: an extension or a phone number as the PBX dials it (the
# spaces, dashes and brackets people type in a number are dropped).
PARTY_RE = re.compile(r"\+?[0-9*#]{1,20}")
NUMBER_PUNCTUATION_RE = re.compile(r"[\s()\-.]")


def connector():
    """The configured connector; NoPBXConfigured when there is none."""
    if settings.TELEPHONY_AMI_HOST:
        return AMIConnector.from_settings()
    if settings.TELEPHONY_CLICK_TO_CALL_URL:
        return HTTPConnector.from_settings()
    raise NoPBXConfigured()


def is_configured() -> bool:
    return bool(settings.TELEPHONY_AMI_HOST or settings.TELEPHONY_CLICK_TO_CALL_URL)


def can_control_calls() -> bool:
    return bool(settings.TELEPHONY_AMI_HOST)


def unsupported() -> dict[str, str]:
    """The controls the configured PBX cannot offer, each with the reason (all of them, when
    no PBX is configured)."""
    if not is_configured():
        return dict.fromkeys(Control.ALL, NoPBXConfigured().message)
    return connector().unsupported()


def click_to_call(manager, lead: Lead) -> Call:
    """Ring `manager`'s phone, then the lead. The call is logged as outbound at once (on the
    lead's timeline); if the PBX refuses, that call is ended with the reason and the error
    raised."""
    connection = connector()
    extension = extension_for(manager)
    number = to_e164(lead.phone) if lead.phone else None
    if not number:
        raise NoPhoneNumber()
    call = services.place_outbound_call(manager, lead, extension, number)
    try:
        connection.originate(extension=extension, number=number, lead=lead, call_id=call.call_id)
    except PBXError as error:
        services.end_unplaced_call(call, error.message)
        raise
    return call


def hangup(call: Call) -> None:
    if call.is_over:
        raise CallOver()
    connector().hangup(call)


def transfer(call: Call, to_extension: str) -> None:
    to_extension = (to_extension or "").strip()
    if not DIALLABLE_RE.fullmatch(to_extension):
        raise BadExtension(to_extension)
    if call.is_over:
        raise CallOver()
    connector().transfer(call, to_extension)


def attended_transfer(call: Call, to_extension: str) -> None:
    to_extension = (to_extension or "").strip()
    if not DIALLABLE_RE.fullmatch(to_extension):
        raise BadExtension(to_extension)
    _check_in_progress(call)
    connector().attended_transfer(call, to_extension)


def hold(call: Call) -> None:
    if call.state == Call.State.ON_HOLD:
        raise NotInState(_("This call is already on hold."))
    _check_in_progress(call)
    connector().hold(call)
    _record(call, "call.held")


def resume(call: Call) -> None:
    if call.is_over:
        raise CallOver()
    if call.state != Call.State.ON_HOLD:
        raise NotInState(_("This call is not on hold."))
    connector().resume(call)
    _record(call, "call.resumed")


def conference(call: Call, party: str) -> None:
    """Add `party` (an extension or a number) to the call, in a conference room of its own."""
    typed = (party or "").strip()
    party = NUMBER_PUNCTUATION_RE.sub("", typed)
    if not PARTY_RE.fullmatch(party):
        raise BadParty(typed)
    if call.is_over:
        raise CallOver()
    if call.state not in (Call.State.ANSWERED, Call.State.ON_HOLD):
        raise NotInState(_("Only a call in progress can become a conference."))
    connector().conference(call, party, room=str(call.pk))


def colleague_extension(manager, colleague_id) -> tuple[str, str]:
    """The extension and the name of the colleague `manager` chose by their user id."""
    try:
        pk = int(colleague_id)
    except (TypeError, ValueError):
        raise NotAColleague() from None
    profile = selectors.colleagues(manager).filter(user_id=pk).first()
    if profile is None:
        raise NotAColleague()
    return profile.extension, user_display_name(profile.user)


def _check_in_progress(call: Call) -> None:
    if call.is_over:
        raise CallOver()
    if call.state != Call.State.ANSWERED:
        raise NotInState(_("Only a call in progress can be transferred or put on hold."))


def _record(call: Call, event_type: str) -> None:
    """The PBX did it: the call says so at once (its state, the manager's agent state)."""
    updated = services.apply_event(
        call.source,
        CallEventData(
            event_id=f"crm:{event_type}:{uuid.uuid4().hex}",
            type=event_type,
            call_id=call.call_id,
            # Never before the call's last event, or a PBX clock ahead of ours would win.
            occurred_at=max(timezone.now(), call.last_event_at),
        ),
    )
    call.state = updated.state


def set_away(manager, away: bool) -> PBXError | None:
    """The manager's own away switch: in the CRM always; at the PBX, as do-not-disturb on their
    extension (AMI: the DND/<extension> key in AstDB that the usual dialplans check), when it
    can be. Returns why the PBX was not told, if it was not."""
    problem = None
    try:
        connector().set_dnd(extension_for(manager), away)
    except PBXError as error:
        problem = error
    agents.set_away(manager, away)
    return problem


def extension_for(manager) -> str:
    profile = getattr(manager, "profile", None)
    extension = (profile.extension if profile else "").strip()
    if not extension:
        raise NoExtension(manager)
    return extension
