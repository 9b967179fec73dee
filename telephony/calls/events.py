"""Call events: what any PBX, through any connector, says about a call, and where it came from.

A call is known by its source and that source's call id (`Call.source`, `Call.call_id`): the
generic webhook, the Asterisk listener, or the CRM itself for the calls it places.
"""

from dataclasses import dataclass, field
from datetime import datetime

EVENT_TYPES = {
    "call.ringing",
    "call.answered",
    "call.held",
    "call.resumed",
    "call.transferred",
    "call.ended",
    "call.recording_ready",
}

# Sources of call events.
WEBHOOK = "webhook"
AMI = "ami"
CRM = "crm"  # placed from the CRM (click-to-call); the AMI listener follows it on that row
# Calls placed from the CRM carry this prefix in their call id, which the AMI connector makes
# their Asterisk channel id (Originate's ChannelId) and so their Linkedid: the listener
# recognises them by it.
CRM_CALL_PREFIX = "crm-"


@dataclass(frozen=True)
class CallEventData:
    """One event about one call, whatever PBX or connector it came from."""

    event_id: str
    type: str
    call_id: str
    occurred_at: datetime
    direction: str = ""
    from_number: str = ""
    to_number: str = ""
    extension: str = ""
    line: str = ""
    duration: int | None = None
    recording_url: str = ""
    transfer_to: str = ""
    hangup_cause: str = ""
    raw: dict = field(default_factory=dict)
