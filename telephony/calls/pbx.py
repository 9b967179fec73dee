"""Call control from the CRM: click-to-call, hang up, transfer, and the manager's away switch
(do-not-disturb at the PBX).

The connector is chosen by settings: Asterisk AMI when TELEPHONY_AMI_HOST is set (a short
connection per action), else an HTTP endpoint when TELEPHONY_CLICK_TO_CALL_URL is set (cloud
PBXs: click-to-call only), else none. Whatever cannot be done raises a PBXError whose message
can be shown to the manager as it is.
"""

import re

from django.conf import settings

from crm.models import Lead
from crm.phones import to_e164
from telephony.calls import agents, services
from telephony.calls.connectors import AMIConnector, HTTPConnector
from telephony.calls.pbx_errors import (
    BadExtension,
    CallOver,
    NoExtension,
    NoPBXConfigured,
    NoPhoneNumber,
    PBXError,
)
from telephony.models import Call

DIALLABLE_RE = re.compile(r"[0-9*#]{1,20}")


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
