"""The generic PBX webhook's requests: one signed JSON call event per POST (the view is
`telephony.views.events`).

    POST /telephony/events/
    X-Timestamp: 1764000000
    X-Signature: sha256=...            (see telephony.calls.signatures)

    {"event_id": "e-1", "type": "call.answered", "call_id": "c-1", "direction": "in",
     "from": "+79161234567", "to": "+74950000000", "extension": "201",
     "occurred_at": "2025-11-24T12:00:05+03:00",
     "duration": 65, "recording_url": "https://...", "transfer_to": "", "line": "", "cause": ""}

A request that is not signed with one of our secrets is refused and only logged. A signed request
whose payload cannot be used answers 400 naming the field, and is kept as a RejectedPayload.
"""

import json
import logging
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.core.validators import URLValidator
from django.utils.translation import gettext as _

from telephony.calls import signatures
from telephony.calls.events import EVENT_TYPES, WEBHOOK, CallEventData
from telephony.models import Call, RejectedPayload
from telephony.services import keep_rejected

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # bytes; a call event is a few hundred
KEPT_HEADERS = [
    "Content-Type",
    "Content-Length",
    "User-Agent",
    signatures.TIMESTAMP_HEADER,
    signatures.SIGNATURE_HEADER,
    "X-Forwarded-For",
]
MAX_DURATION = 2**31 - 1  # what the duration column holds
URLS = URLValidator(schemes=["http", "https"])

# Field name in the JSON -> (CallEventData attribute, longest value the database keeps).
REQUIRED_TEXT = {"event_id": ("event_id", 200), "call_id": ("call_id", 200)}
NUMBERS = {"from": ("from_number", 100), "to": ("to_number", 100), "extension": ("extension", 20)}
OPTIONAL_TEXT = {
    "line": ("line", 100),
    "transfer_to": ("transfer_to", 50),
    "cause": ("hangup_cause", 100),
}


class InvalidEvent(ValueError):
    """The payload cannot be used; `field` names what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class TooLarge(InvalidEvent):
    pass


# --- Reading and verifying a request ---------------------------------------------------------


def read_body(request) -> bytes:
    """The raw body, never more than MAX_BODY bytes of it read, or TooLarge (logged)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    body = None
    if declared <= MAX_BODY:
        try:
            body = request.body  # bounded by Content-Length, checked above
        except RequestDataTooBig:  # DATA_UPLOAD_MAX_MEMORY_SIZE set below our cap
            body = None
    if body is None or len(body) > MAX_BODY:
        logger.warning("Telephony webhook: body over %d bytes refused", MAX_BODY)
        raise TooLarge("body", _("larger than %(count)d bytes") % {"count": MAX_BODY})
    return body


def verify(request, body: bytes) -> None:
    """Raise a SignatureError (logged) unless `body` is signed with one of our secrets, recently."""
    try:
        signatures.verify(
            body,
            request.headers.get(signatures.TIMESTAMP_HEADER, ""),
            request.headers.get(signatures.SIGNATURE_HEADER, ""),
            secrets=settings.TELEPHONY_WEBHOOK_SECRETS,
            max_age=settings.TELEPHONY_WEBHOOK_MAX_AGE,
        )
    except signatures.SignatureError as error:
        logger.warning(
            "Telephony webhook refused (%s) from %s: %s",
            error.status,
            request.META.get("REMOTE_ADDR"),
            error.message,
        )
        raise


# --- Parsing --------------------------------------------------------------------------------


def parse_body(body: bytes) -> CallEventData:
    """The event in a raw request body, or InvalidEvent."""
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as error:
        raise InvalidEvent("body", _("not valid JSON (%(error)s)") % {"error": error}) from error
    return parse_event(data)


def parse_event(data) -> CallEventData:
    """Validate one decoded event into CallEventData, or raise InvalidEvent naming the field.

    Required: event_id, type, call_id, direction, occurred_at (ISO 8601 with an offset) and the
    keys from, to, extension (empty for a hidden caller id or a call nobody answered yet).
    Optional: duration, recording_url, transfer_to, line, cause. Unknown keys are kept in the
    stored payload and otherwise ignored."""
    if not isinstance(data, dict):
        raise InvalidEvent("body", _("must be a JSON object"))
    _reject_nul(data, "body")
    raw, fields = data, {}
    for name, (attribute, longest) in REQUIRED_TEXT.items():
        fields[attribute] = _text(data, name, longest, required=True)
    event_type = _text(data, "type", 50, required=True)
    if event_type not in EVENT_TYPES:
        raise InvalidEvent(
            "type",
            _("unknown event type “%(type)s”; expected one of: %(types)s")
            % {"type": event_type, "types": ", ".join(sorted(EVENT_TYPES))},
        )
    direction = _text(data, "direction", 10, required=True)
    if direction not in Call.Direction.values:
        raise InvalidEvent(
            "direction",
            _("must be one of: %(values)s") % {"values": ", ".join(Call.Direction.values)},
        )
    for name, (attribute, longest) in NUMBERS.items():
        if name not in data:
            raise InvalidEvent(name, _("this field is required"))
        if isinstance(data[name], int) and not isinstance(data[name], bool):
            data = {**data, name: str(data[name])}  # an extension sent as a number
        fields[attribute] = _text(data, name, longest)
    for name, (attribute, longest) in OPTIONAL_TEXT.items():
        fields[attribute] = _text(data, name, longest)
    return CallEventData(
        type=event_type,
        direction=direction,
        occurred_at=_moment(data),
        duration=_duration(data),
        recording_url=_recording_url(data),
        raw=raw,
        **fields,
    )


def _text(data: dict, name: str, longest: int, *, required: bool = False) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise InvalidEvent(name, _("this field is required"))
        return ""
    if not isinstance(value, str):
        raise InvalidEvent(name, _("must be a string"))
    value = value.strip()
    if len(value) > longest:
        raise InvalidEvent(name, _("longer than %(count)d characters") % {"count": longest})
    if required and not value:
        raise InvalidEvent(name, _("this field is required"))
    return value


def _moment(data: dict) -> datetime:
    value = _text(data, "occurred_at", 40, required=True)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise InvalidEvent("occurred_at", _("not an ISO 8601 date and time")) from error
    if moment.utcoffset() is None:
        raise InvalidEvent(
            "occurred_at", _("needs a time zone offset, e.g. 2025-11-24T12:00:00+03:00")
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:  # 0001-01-01T00:00:00+03:00 has no UTC
        raise InvalidEvent("occurred_at", _("not an ISO 8601 date and time")) from error


def _duration(data: dict) -> int | None:
    value = data.get("duration")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DURATION:
        raise InvalidEvent("duration", _("must be a whole number of seconds, 0 or more"))
    return value


def _recording_url(data: dict) -> str:
    value = _text(data, "recording_url", 500)
    if value:
        try:
            URLS(value)
        except ValidationError as error:
            raise InvalidEvent("recording_url", _("must be an http or https URL")) from error
    return value


def _reject_nul(value, where: str) -> None:
    """PostgreSQL keeps no NUL character in text or JSON: refuse them with a clear error."""
    if isinstance(value, str) and "\x00" in value:
        raise InvalidEvent(where, _("contains a NUL character"))
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key, where)
            _reject_nul(item, key if where == "body" else where)
    elif isinstance(value, list):
        for item in value:
            _reject_nul(item, where)


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number")


# --- Keeping what could not be used ---------------------------------------------------------


def reject(request, body: bytes, error: str) -> RejectedPayload:
    """Keep a signed request we could not use, for somebody to look at."""
    logger.warning("Telephony webhook: signed payload rejected: %s", error)
    text = body[:MAX_BODY].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    headers = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
    headers["Remote-Addr"] = request.META.get("REMOTE_ADDR", "")
    return keep_rejected(WEBHOOK, error[:500], text, headers)
