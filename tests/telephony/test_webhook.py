import json
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import timedelta

import pytest
import time_machine

from crm.models import Activity, LeadStatus, Notification
from nurture.models import Enrollment
from telephony.calls import signatures
from telephony.calls.signatures import sign
from telephony.calls.webhook import MAX_BODY, InvalidEvent, parse_body, parse_event
from telephony.models import Call, CallEvent, RejectedPayload
from tests.telephony.conftest import T0, call_event, webhook_json

OLD_SECRET, NEW_SECRET = "old-shared-secret", "new-shared-secret"
LIVE = pytest.mark.django_db(transaction=True, serialized_rollback=True)
RINGING = webhook_json(call_event("call.ringing"))


def signed(body: bytes, secret=OLD_SECRET, *, at=None) -> dict:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "Content-Type": "application/json",
        "X-Timestamp": timestamp,
        "X-Signature": sign(secret, timestamp, body),
    }


def post(url, body: bytes, headers: dict, method="POST"):
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, json.loads(text) if text.startswith(b"{") else {}


def counts() -> dict:
    models = [Call, CallEvent, Activity, Notification, Enrollment, RejectedPayload]
    return {model.__name__: model.objects.count() for model in models}


@pytest.fixture
def secrets(settings):
    settings.TELEPHONY_WEBHOOK_SECRETS = [OLD_SECRET, NEW_SECRET]
    settings.TELEPHONY_WEBHOOK_MAX_AGE = 300


@pytest.fixture
def send(live_server, secrets):
    """POST an event (a dict, or raw bytes) to the webhook, signed with the first secret."""
    url = f"{live_server.url}/telephony/events/"

    def run(payload, *, secret=OLD_SECRET, headers=None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return post(url, body, signed(body, secret) if headers is None else headers)

    run.url = url
    return run


# --- Over HTTP ------------------------------------------------------------------------------


@pytest.mark.slow
@LIVE
def test_a_signed_call_from_a_lead_stops_nurturing_and_lands_on_the_timeline(
    calling_lead, alice, send
):
    answers = [
        send(webhook_json(call_event("call.ringing"))),
        send(webhook_json(call_event("call.answered", seconds=5))),
        send(
            webhook_json(
                call_event("call.ended", seconds=65, duration=65, hangup_cause="normal_clearing")
            )
        ),
    ]

    call = Call.objects.get()
    assert answers == [(200, {"status": "ok", "call": call.pk})] * 3
    assert (call.source, call.state, call.lead, call.agent) == (
        "webhook",
        Call.State.ENDED,
        calling_lead,
        alice,
    )
    assert (call.duration, call.talk_time, call.hangup_cause) == (65, 60, "normal_clearing")
    assert call.events.count() == 3
    calling_lead.refresh_from_db()
    assert calling_lead.status.code == LeadStatus.IN_PROGRESS
    assert calling_lead.enrollments.get().halt_reason == Enrollment.HaltReason.CALL
    entry = calling_lead.activities.get(kind=Activity.Kind.CALL)
    assert (entry.payload["call"], entry.payload["talk_time"]) == (call.pk, 60)
    assert entry.description == "Incoming call"
    assert Notification.objects.filter(user=alice, message__contains="called").count() == 1


@pytest.mark.slow
@LIVE
def test_a_replayed_request_is_a_duplicate_and_changes_nothing(calling_lead, send):
    body = json.dumps(RINGING).encode()
    headers = signed(body)
    assert send(body, headers=headers)[0] == 200
    before = counts()

    answer = send(body, headers=headers)

    assert answer == (200, {"status": "duplicate"})
    assert counts() == before


@pytest.mark.slow
@LIVE
def test_the_second_secret_is_accepted_during_a_rotation(calling_lead, send):
    status, answer = send(RINGING, secret=NEW_SECRET)

    assert (status, answer["status"]) == (200, "ok")
    assert Call.objects.get().lead == calling_lead


@pytest.mark.slow
@LIVE
def test_events_out_of_order_make_one_correct_call(calling_lead, send):
    send(webhook_json(call_event("call.ended", seconds=65)))
    send(webhook_json(call_event("call.answered", seconds=5)))
    send(RINGING)

    call = Call.objects.get()
    assert (call.state, call.started_at, call.duration, call.talk_time) == (
        Call.State.ENDED,
        T0,
        65,
        60,
    )
    assert calling_lead.activities.filter(kind=Activity.Kind.CALL).count() == 1


@pytest.mark.slow
@LIVE
def test_unsigned_forged_and_stale_requests_are_refused_logged_and_not_stored(
    calling_lead, send, caplog
):
    body = json.dumps(RINGING).encode()
    now = time.time()
    forged = signed(body, "somebody-elses-secret")
    tampered = signed(body) | {"X-Signature": signed(body + b" ")["X-Signature"]}
    before = counts()

    answers = {
        "unsigned": send(body, headers={"Content-Type": "application/json"})[0],
        "no timestamp": send(body, headers=signed(body) | {"X-Timestamp": ""})[0],
        "forged": send(body, headers=forged)[0],
        "tampered": send(body, headers=tampered)[0],
        "garbage timestamp": send(body, headers=signed(body) | {"X-Timestamp": "yesterday"})[0],
        "stale": send(body, headers=signed(body, at=now - 330))[0],
        "from the future": send(body, headers=signed(body, at=now + 330))[0],
    }

    assert answers == {
        "unsigned": 401,
        "no timestamp": 401,
        "forged": 403,
        "tampered": 403,
        "garbage timestamp": 403,
        "stale": 403,
        "from the future": 403,
    }
    assert counts() == before
    refusals = [r for r in caplog.records if r.getMessage().startswith("Telephony webhook refused")]
    assert len(refusals) == len(answers)


@pytest.mark.slow
@LIVE
def test_without_a_configured_secret_nothing_is_accepted(calling_lead, send, settings):
    settings.TELEPHONY_WEBHOOK_SECRETS = []

    status, answer = send(RINGING, secret="")

    assert status == 503
    assert "TELEPHONY_WEBHOOK_SECRETS" in answer["error"]
    assert Call.objects.count() == RejectedPayload.objects.count() == 0


@pytest.mark.slow
@LIVE
def test_a_get_is_not_allowed(send):
    assert post(send.url, None, {}, method="GET")[0] == 405


BAD_PAYLOADS = [
    (b'{"event_id": "e-1", "type": ', "body"),
    (json.dumps({k: v for k, v in RINGING.items() if k != "call_id"}), "call_id"),
    (json.dumps(RINGING | {"type": "call.exploded"}), "type"),
    (json.dumps(RINGING | {"occurred_at": "2025-11-24T12:00:00"}), "occurred_at"),
    (json.dumps(RINGING | {"recording_url": "ftp://pbx/r.wav"}), "recording_url"),
    (json.dumps(RINGING | {"duration": -5}), "duration"),
]


@pytest.mark.slow
@LIVE
def test_signed_but_unusable_payloads_answer_400_naming_the_field_and_are_kept(calling_lead, send):
    before = counts()

    answers = [
        send(body if isinstance(body, bytes) else body.encode()) for body, _field in BAD_PAYLOADS
    ]

    assert [status for status, _ in answers] == [400] * len(BAD_PAYLOADS)
    assert [answer["field"] for _, answer in answers] == [field for _, field in BAD_PAYLOADS]
    assert all(answer["error"].startswith(answer["field"] + ": ") for _, answer in answers)
    kept = list(RejectedPayload.objects.order_by("id"))
    assert [(rejected.source, rejected.error) for rejected in kept] == [
        ("webhook", answer["error"]) for _, answer in answers
    ]
    assert kept[0].body == BAD_PAYLOADS[0][0].decode()
    assert kept[0].headers["X-Signature"].startswith("sha256=")
    assert {**counts(), "RejectedPayload": before["RejectedPayload"]} == before


@LIVE
def test_a_rejected_payload_sent_again_is_kept_once_and_counted(calling_lead, send):
    body = json.dumps(RINGING | {"type": "call.exploded"}).encode()

    assert [send(body)[0], send(body)[0], send(body + b" ")[0]] == [400, 400, 400]

    kept = list(RejectedPayload.objects.order_by("id").values_list("body", "times"))
    assert kept == [(body.decode(), 2), (body.decode() + " ", 1)]


@pytest.mark.slow
@LIVE
def test_a_body_over_the_cap_is_refused_unread_and_not_stored(calling_lead, send, settings):
    huge = json.dumps(RINGING | {"padding": "x" * (MAX_BODY + 1)}).encode()
    before = counts()

    status, answer = send(huge)
    # Below our cap but above Django's own limit: Django's refusal is answered the same way.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    limited = send(json.dumps(RINGING | {"padding": "x" * 2000}).encode())

    assert (status, answer["field"]) == (413, "body")
    assert limited[0] == 413
    assert counts() == before


# --- Parsing, directly ----------------------------------------------------------------------


def test_a_full_event_is_parsed_into_call_event_data():
    sent = call_event(
        "call.ended",
        seconds=65,
        duration=65,
        recording_url="https://pbx.example/r/1.wav",
        transfer_to="205",
        line="+74950000000",
        hangup_cause="normal_clearing",
    )
    data = webhook_json(sent, vendor_field={"kept": True})

    parsed = parse_event(data)

    assert parsed == replace(sent, raw=data)
    assert parsed.occurred_at == T0 + timedelta(seconds=65)


def test_a_hidden_caller_id_and_a_numeric_extension_are_fine():
    parsed = parse_event(RINGING | {"extension": 201, "from": ""})

    assert (parsed.from_number, parsed.extension) == ("", "201")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_id": None}, "event_id"),
        ({"event_id": " "}, "event_id"),
        ({"event_id": "e" * 201}, "event_id"),
        ({"type": "call.exploded"}, "type"),
        ({"type": ["call.ringing"]}, "type"),
        ({"call_id": 17}, "call_id"),
        ({"direction": "sideways"}, "direction"),
        ({"extension": "2" * 21}, "extension"),
        ({"occurred_at": "2025-11-24T12:00:00"}, "occurred_at"),
        ({"occurred_at": "last Monday"}, "occurred_at"),
        ({"occurred_at": 1764000000}, "occurred_at"),
        ({"occurred_at": "0001-01-01T00:00:00+03:00"}, "occurred_at"),
        ({"duration": -1}, "duration"),
        ({"duration": 6.5}, "duration"),
        ({"duration": "65"}, "duration"),
        ({"duration": True}, "duration"),
        ({"duration": 2**40}, "duration"),
        ({"recording_url": "javascript:alert(1)"}, "recording_url"),
        ({"recording_url": "not a url"}, "recording_url"),
        ({"transfer_to": "9" * 51}, "transfer_to"),
        ({"cause": {"code": 16}}, "cause"),
        ({"from": "+7916\x001234567"}, "from"),
        ({"vendor": {"note": "a\x00b"}}, "vendor"),
    ],
)
def test_each_bad_field_is_named(change, field):
    with pytest.raises(InvalidEvent) as raised:
        parse_event(RINGING | change)

    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    "missing",
    ["event_id", "type", "call_id", "direction", "from", "to", "extension", "occurred_at"],
)
def test_each_required_field_is_required(missing):
    data = {key: value for key, value in RINGING.items() if key != missing}

    with pytest.raises(InvalidEvent, match=f"^{missing}: this field is required"):
        parse_event(data)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\xfa",
        b'["call.ringing"]',
        b'{"duration": NaN}',
        b"[" * 50_000 + b"]" * 50_000,
    ],
)
def test_a_body_that_is_not_a_json_object_is_named_body(body):
    with pytest.raises(InvalidEvent) as raised:
        parse_body(body)

    assert raised.value.field == "body"


# --- Signatures, directly -------------------------------------------------------------------

NOW = 1_764_000_000


def check(body=b"{}", *, at=NOW, secret=OLD_SECRET, signature=None, secrets=(OLD_SECRET,)):
    with time_machine.travel(NOW, tick=False):
        signatures.verify(
            body,
            str(at),
            sign(secret, at, body) if signature is None else signature,
            secrets=list(secrets),
            max_age=300,
        )


def test_the_window_is_max_age_seconds_either_way():
    check(at=NOW - 300)
    check(at=NOW + 300)
    with pytest.raises(signatures.StaleTimestamp):
        check(at=NOW - 301)
    with pytest.raises(signatures.StaleTimestamp):
        check(at=NOW + 301)


def test_any_configured_secret_signs_and_empty_ones_do_not_count():
    check(secret=NEW_SECRET, secrets=["", OLD_SECRET, NEW_SECRET])
    with pytest.raises(signatures.BadSignature):
        check(secret="", secrets=["", OLD_SECRET])
    with pytest.raises(signatures.NotConfigured):
        check(secret="", secrets=["", ""])


def test_a_malformed_signature_is_refused_not_an_error():
    for signature in ["sha256=", "md5=abc", "sha256=щ" * 3, sign(OLD_SECRET, NOW, b"{}").upper()]:
        with pytest.raises(signatures.BadSignature):
            check(signature=signature)
