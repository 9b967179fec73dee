import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from telephony.calls.events import CallEventData
from telephony.calls.services import apply_event

T0 = datetime(2025, 11, 24, 9, 0, tzinfo=UTC)  # Monday 12:00 in Moscow
MSK = ZoneInfo("Europe/Moscow")
_event_numbers = itertools.count(1)


def call_event(type, *, call_id="call-1", seconds=0, at=None, **fields) -> CallEventData:
    """A call event as a PBX sends it: by default about an inbound call from +7 916 123-45-67
    to the company's line, on alice's extension 201, `seconds` after T0 (or after `at`). Every
    event has an id of its own."""
    fields.setdefault("direction", "in")
    fields.setdefault("from_number", "+7 916 123-45-67")
    fields.setdefault("to_number", "+7 495 000-00-00")
    fields.setdefault("extension", "201")
    return CallEventData(
        event_id=f"{call_id}-{next(_event_numbers)}",
        type=type,
        call_id=call_id,
        occurred_at=(at or T0) + timedelta(seconds=seconds),
        **fields,
    )


def webhook_json(event: CallEventData, **changes) -> dict:
    """`event` as the generic webhook's JSON, its time at the Moscow offset like a PBX in Moscow;
    `changes` replace or add keys as they are sent."""
    data = {
        "event_id": event.event_id,
        "type": event.type,
        "call_id": event.call_id,
        "direction": event.direction,
        "from": event.from_number,
        "to": event.to_number,
        "extension": event.extension,
        "occurred_at": event.occurred_at.astimezone(MSK).isoformat(),
    }
    optional = {
        "duration": event.duration,
        "recording_url": event.recording_url,
        "transfer_to": event.transfer_to,
        "line": event.line,
        "cause": event.hangup_cause,
    }
    data.update({key: value for key, value in optional.items() if value not in (None, "")})
    return {**data, **changes}


@pytest.fixture
def apply(django_capture_on_commit_callbacks):
    """Apply call events, with what they do once committed: apply(event, ...) -> the calls
    (None for an event already applied)."""

    def run(*events, source="pbx"):
        with django_capture_on_commit_callbacks(execute=True):
            return [apply_event(source, event) for event in events]

    return run


@pytest.fixture
def ring(apply):
    """A call event happening now (or `ago` before): ring("call.ringing", ...) -> its call."""

    def run(type, *, ago=timedelta(0), **fields):
        [call] = apply(call_event(type, at=timezone.now() - ago, **fields))
        return call

    return run


@pytest.fixture
def calling_lead(nurtured_lead):
    """The nurtured lead (Ivan, alice's) with a phone: 8 (916) 123-45-67."""
    nurtured_lead.phone_raw = "8 (916) 123-45-67"
    nurtured_lead.save()
    return nurtured_lead
