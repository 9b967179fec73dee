from datetime import UTC, datetime, timedelta

import pytest

from telephony.calls import CallEventData

T0 = datetime(2025, 11, 24, 9, 0, tzinfo=UTC)  # Monday 12:00 in Moscow


@pytest.fixture
def call_event():
    """Build a generic call event: call_event("call.ringing", seconds=0, ...)."""
    counter = iter(range(1, 10_000))

    def make(type, *, call_id="call-1", seconds=0, **fields):
        fields.setdefault("direction", "in")
        fields.setdefault("from_number", "+7 916 123-45-67")
        fields.setdefault("to_number", "+7 495 000-00-00")
        fields.setdefault("extension", "201")
        return CallEventData(
            event_id=f"{call_id}-{next(counter)}",
            type=type,
            call_id=call_id,
            occurred_at=T0 + timedelta(seconds=seconds),
            **fields,
        )

    return make


@pytest.fixture
def calling_lead(make_lead, alice, django_capture_on_commit_callbacks):
    """Alice's lead with a phone, being nurtured."""
    from crm import services

    lead = make_lead(alice, phone_raw="8 (916) 123-45-67", email="caller@client.example")
    with django_capture_on_commit_callbacks(execute=True):
        services.change_status(lead, "nurturing", by=alice)
    return lead
