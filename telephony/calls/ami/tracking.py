"""Asterisk AMI events as call events: which AMI event means what for a call in the CRM.

A call is everything that shares a **Linkedid** (the Uniqueid of its oldest channel), so the
Linkedid is the call id. `CallTracker` follows the channels of each call (in memory, in the
listener's event loop) and turns AMI events into `CallEventData`; `pump` hands them on to be
applied. The tracker only reads AMI events: it writes nothing.

    Newchannel of the first leg   -> call.ringing (direction, numbers)
    DialBegin to an extension     -> call.ringing on that extension
    DialEnd ANSWER, BridgeEnter   -> call.answered (by that extension)
    Hold / Unhold                 -> call.held / call.resumed
    BlindTransfer, AttendedTransfer -> call.transferred (to whom)
    Hangup of the last leg        -> call.ended (cause)
    Cdr                           -> call.ended (duration from the PBX's call records)
"""

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from django.utils import timezone

from telephony.calls.events import CRM_CALL_PREFIX, CallEventData
from telephony.models import Call, CallEvent

# Endpoints named by a short number are the managers' phones; anything else (a named trunk,
# a long number) is the outside world.
EXTENSION_RE = re.compile(r"[0-9]{2,6}")
CHANNEL_RE = re.compile(r"^[A-Za-z0-9_]+/(?P<endpoint>[^-@;/]+)")
# Contexts in which calls from the outside world start, whatever the caller id says.
INBOUND_CONTEXTS = {"from-trunk", "from-pstn", "from-external", "from-did-direct", "incoming"}
UNKNOWN = {"", "<unknown>", "unknown", "anonymous", "s"}
# Calls remembered at once; the longest quiet are forgotten first.
MAX_TRACKED_CALLS = 5000
EVENT_ID_MAX_LENGTH = CallEvent._meta.get_field("event_id").max_length


def is_extension(value: str) -> bool:
    return bool(EXTENSION_RE.fullmatch(value or ""))


def extension_of(channel: str) -> str:
    """`PJSIP/201-0000000a`, `SIP/201-…`, `Local/201@from-queue-…;1` -> "201"; trunks -> ""."""
    match = CHANNEL_RE.match(channel or "")
    endpoint = match["endpoint"] if match else ""
    return endpoint if is_extension(endpoint) else ""


def _number(value: str | None) -> str:
    value = (value or "").strip()
    return "" if value.lower() in UNKNOWN else value


@dataclass
class TrackedCall:
    linkedid: str
    first_leg_seen: bool = False
    channels: set = field(default_factory=set)
    crm_lead_id: int | None = None
    answered: bool = False
    ended_at: datetime | None = None
    records: list = field(default_factory=list)  # (start, end, duration) from Cdr events


@dataclass(frozen=True)
class TrackedEvent:
    event: CallEventData
    first_leg_seen: bool
    crm_lead_id: int | None = None


class CallTracker:
    """AMI events in, call events out. Deterministic: the same AMI events give the same call
    events with the same ids, so a replayed transcript changes nothing."""

    def __init__(self):
        self._calls: OrderedDict[str, TrackedCall] = OrderedDict()
        self._linkedid_of: OrderedDict[str, str] = OrderedDict()

    def feed(self, message: dict) -> TrackedEvent | None:
        handler = getattr(self, f"_on_{message.get('Event', '').lower()}", None)
        if handler is None:
            return None
        made = handler(message)
        if made is None:
            return None
        call = self._calls[made.call_id]
        return TrackedEvent(made, call.first_leg_seen, call.crm_lead_id)

    # --- bookkeeping

    def _call(self, linkedid: str, message: dict) -> TrackedCall:
        call = self._calls.get(linkedid)
        if call is None:
            call = self._calls[linkedid] = TrackedCall(linkedid)
            while len(self._calls) > MAX_TRACKED_CALLS:
                self._calls.popitem(last=False)
        else:
            self._calls.move_to_end(linkedid)
        lead_id = (message.get("ChanVariable") or {}).get("CRM_LEAD_ID", "")
        if lead_id.isdigit():
            call.crm_lead_id = int(lead_id)
        return call

    def _remember(self, uniqueid: str, linkedid: str) -> None:
        if uniqueid and linkedid:
            self._linkedid_of[uniqueid] = linkedid
            while len(self._linkedid_of) > MAX_TRACKED_CALLS * 4:
                self._linkedid_of.popitem(last=False)

    def _event(self, message: dict, type: str, linkedid: str, uniqueid: str, **fields):
        """The call event, with an id made of the AMI event itself: with `timestampevents`
        its Timestamp, without it a digest of all its fields."""
        stamp = message.get("Timestamp") or _digest(message)
        event_id = f"{linkedid}:{uniqueid}:{message['Event']}:{stamp}"
        if len(event_id) > EVENT_ID_MAX_LENGTH:
            event_id = f"{linkedid[:100]}:{_digest(message)}:{stamp[:30]}"
        return CallEventData(
            event_id=event_id,
            type=type,
            call_id=linkedid,
            occurred_at=_occurred_at(message),
            raw=message,
            **fields,
        )

    # --- the events

    def _on_newchannel(self, message):
        uniqueid = message.get("Uniqueid", "")
        linkedid = message.get("Linkedid") or uniqueid
        if not linkedid:
            return None
        call = self._call(linkedid, message)
        call.channels.add(uniqueid)
        self._remember(uniqueid, linkedid)
        if uniqueid != linkedid:
            return None  # a further leg of a call already ringing
        call.first_leg_seen = True
        return self._event(message, "call.ringing", linkedid, uniqueid, **_first_leg(message, call))

    def _on_dialbegin(self, message):
        linkedid = message.get("Linkedid") or message.get("DestLinkedid", "")
        extension = extension_of(message.get("DestChannel", ""))
        if not linkedid:
            return None
        call = self._call(linkedid, message)
        self._remember(message.get("DestUniqueid", ""), linkedid)
        if not extension or call.answered:
            # Dialling out through a trunk: the call already rings. Or the target of a transfer
            # ringing: the call goes on, and its answering says who has it now.
            return None
        uniqueid = f"{message.get('Uniqueid', '')}>{message.get('DestUniqueid', '')}"
        return self._event(message, "call.ringing", linkedid, uniqueid, extension=extension)

    def _on_dialend(self, message):
        linkedid = message.get("Linkedid", "")
        # No calling channel: Originate ringing the manager's own phone first. The manager
        # picking up is not the call being answered; the lead answering is.
        if message.get("DialStatus") != "ANSWER" or not linkedid or not message.get("Channel"):
            return None
        self._call(linkedid, message).answered = True
        extension = extension_of(message.get("DestChannel", "")) or extension_of(message["Channel"])
        uniqueid = f"{message.get('Uniqueid', '')}>{message.get('DestUniqueid', '')}"
        return self._event(message, "call.answered", linkedid, uniqueid, extension=extension)

    def _on_bridgeenter(self, message):
        linkedid = message.get("Linkedid", "")
        if not linkedid or _int(message.get("BridgeNumChannels")) < 2:
            return None
        if "holding" in message.get("BridgeTechnology", ""):
            return None
        self._call(linkedid, message).answered = True
        return self._event(
            message,
            "call.answered",
            linkedid,
            message.get("Uniqueid", ""),
            extension=extension_of(message.get("Channel", "")),
        )

    def _on_hold(self, message):
        return self._simple(message, "call.held")

    def _on_unhold(self, message):
        return self._simple(message, "call.resumed")

    def _simple(self, message, type):
        linkedid = message.get("Linkedid", "")
        if not linkedid:
            return None
        self._call(linkedid, message)
        return self._event(message, type, linkedid, message.get("Uniqueid", ""))

    def _on_blindtransfer(self, message):
        linkedid = message.get("TransfereeLinkedid") or message.get("TransfererLinkedid", "")
        if message.get("Result") != "Success" or not linkedid:
            return None
        self._call(linkedid, message)
        return self._event(
            message,
            "call.transferred",
            linkedid,
            message.get("TransfererUniqueid", ""),
            transfer_to=_number(message.get("Extension")),
        )

    def _on_attendedtransfer(self, message):
        linkedid = message.get("OrigTransfererLinkedid", "")
        if message.get("Result") != "Success" or not linkedid:
            return None
        self._call(linkedid, message)
        target = (
            extension_of(message.get("TransferTargetChannel", ""))
            or _number(message.get("TransferTargetCallerIDNum"))
            or extension_of(message.get("SecondTransfererChannel", ""))
            or message.get("DestApp", "")
        )
        return self._event(
            message,
            "call.transferred",
            linkedid,
            message.get("OrigTransfererUniqueid", ""),
            transfer_to=target,
        )

    def _on_hangup(self, message):
        uniqueid = message.get("Uniqueid", "")
        linkedid = message.get("Linkedid") or uniqueid
        if not linkedid:
            return None
        call = self._call(linkedid, message)
        if call.channels:
            call.channels.discard(uniqueid)
            last = not call.channels
        else:  # the listener came in mid-call: the first leg going is the end of it
            last = uniqueid == linkedid
        if not last:
            return None
        event = self._event(
            message,
            "call.ended",
            linkedid,
            uniqueid,
            hangup_cause=message.get("Cause-txt") or message.get("Cause", ""),
        )
        call.ended_at = event.occurred_at
        return event

    def _on_cdr(self, message):
        """A call detail record: the PBX's own account of how long the call took. One call can
        have several (a transfer starts a new one); its duration is their whole span."""
        uniqueid = message.get("UniqueID") or message.get("Uniqueid", "")
        linkedid = message.get("Linkedid") or self._linkedid_of.get(uniqueid) or uniqueid
        if not linkedid:
            return None
        call = self._call(linkedid, message)
        start, end = _cdr_time(message.get("StartTime")), _cdr_time(message.get("EndTime"))
        call.records.append((start, end, _int(message.get("Duration"))))
        duration = max(record[2] for record in call.records)
        starts = [record[0] for record in call.records if record[0]]
        ends = [record[1] for record in call.records if record[1]]
        if len(call.records) > 1 and starts and ends:
            duration = max(duration, int((max(ends) - min(starts)).total_seconds()))
        event = self._event(message, "call.ended", linkedid, uniqueid, duration=duration)
        if call.ended_at:  # the hang-up said when; the record only says how long
            event = replace(event, occurred_at=call.ended_at)
        return event


def _first_leg(message: dict, call: TrackedCall) -> dict:
    """Direction and numbers of a call, from its first channel."""
    caller = _number(message.get("CallerIDNum"))
    dialled = _number(message.get("Exten"))
    extension = extension_of(message.get("Channel", ""))
    crm = call.linkedid.startswith(CRM_CALL_PREFIX) or call.crm_lead_id is not None
    if crm or (extension and message.get("Context") not in INBOUND_CONTEXTS):
        if not crm and is_extension(dialled):
            direction = Call.Direction.INTERNAL
        else:
            direction = Call.Direction.OUTBOUND
        return {
            "direction": direction,
            "from_number": extension or caller,
            "to_number": "" if crm and is_extension(dialled) else dialled,
            "extension": extension,
        }
    return {
        "direction": Call.Direction.INBOUND,
        "from_number": caller,
        "to_number": dialled,
        "line": dialled,
    }


def _digest(message: dict) -> str:
    fields = repr(sorted((key, str(value)) for key, value in message.items()))
    return hashlib.sha256(fields.encode()).hexdigest()[:16]


def _occurred_at(message: dict) -> datetime:
    """When the PBX says it happened (`Timestamp`, with `timestampevents = yes` in
    manager.conf), or now."""
    try:
        return datetime.fromtimestamp(float(message["Timestamp"]), tz=UTC)
    except (KeyError, ValueError, OverflowError, OSError):
        return timezone.now()


def _cdr_time(value: str | None) -> datetime | None:
    try:
        return datetime.strptime(value or "", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
