"""Raw mail as text: header values and text parts decoded, and made fit for any database.

What both a letter and a delivery report are read with; no models, no database.
"""

import re
from contextlib import suppress
from email.header import decode_header, make_header
from email.message import Message

MAX_TEXT = 50_000  # characters of body text kept per message
MAX_HEADER_VALUE = 2_000
MAX_HEADERS = 100
MESSAGE_ID = re.compile(r"<[^<>\s]+>")


def header_dict(message: Message) -> dict:
    """Headers decoded to text: {name: value}, or {name: [values]} when repeated."""
    headers: dict = {}
    for name, value in list(message.raw_items())[:MAX_HEADERS]:
        name = clean(str(name)).strip()[:100]
        # A long thread's References keep its newest, most telling Message-IDs at the end.
        limit = MAX_HEADER_VALUE * 10 if name.lower() == "references" else MAX_HEADER_VALUE
        value = decode_words(value)[:limit]
        if name in headers:
            previous = headers[name]
            headers[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            headers[name] = value
    return headers


def header_reader(headers: dict):
    """A case-insensitive reader of `headers`: field("message-id") -> the first value or ""."""
    lowered = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value[0] if isinstance(value, list) else value)
    return lambda name: lowered.get(name.lower(), "")


def decode_words(value) -> str:
    """A header value as text: unfolded, RFC 2047 encoded-words decoded, 8-bit bytes read as
    UTF-8. Already-parsed header objects are taken as they are."""
    text = clean(str(value))
    text = re.sub(r"\r?\n[ \t]+", " ", text).replace("\r", "").replace("\n", " ")
    if "=?" in text:
        # A broken encoded-word is left as it came.
        with suppress(LookupError, UnicodeError, ValueError, AssertionError):
            text = str(make_header(decode_header(text)))
    return clean(text).strip()


def part_text(part: Message) -> str:
    """A single part's payload, decoded in its charset (UTF-8 when that is unknown)."""
    payload = part.get_payload(decode=True) or b""
    if not isinstance(payload, bytes):
        return str(payload)
    payload = payload[: MAX_TEXT * 4]
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def clean(text: str) -> str:
    """Text that every database can store: undecodable bytes (kept by the email parser as
    surrogates) read as UTF-8, NUL characters dropped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "replace")
        text = raw.decode("utf-8", "replace")
    return text.replace("\x00", "")
