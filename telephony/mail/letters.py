"""An incoming message read into a `Letter`: who wrote, about what, answering which email, and
whether it is a reply, an automatic reply or a bounce; its own text and the reply's excerpt.

Only reads the message: no models of its own, no database.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from telephony.mail.bounces import Bounce, is_delivery_report, read_bounce
from telephony.mail.decoding import (
    MAX_TEXT,
    MESSAGE_ID,
    clean,
    header_dict,
    header_reader,
    part_text,
)
from telephony.models import InboundEmail

Kind = InboundEmail.Kind

MAX_EXCERPT = 500  # characters of the reply itself shown on the timeline

# Subjects that out-of-office and other automatic replies start with, in Russian and English.
AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(\[?auto(matic)?[ -]?(reply|response|answer)\b|autoreply|autoresponse"
    r"|out of (the )?office\b"
    r"|автоответ|автоматический ответ|авто-ответ|вне офиса)",
    re.IGNORECASE,
)
AUTO_PRECEDENCE = {"auto_reply", "bulk", "junk"}


@dataclass
class Letter:
    """An incoming message, read and classified, not yet stored."""

    message_id: str
    kind: str
    from_email: str
    from_name: str
    to: str
    subject: str
    text: str
    excerpt: str
    in_reply_to: str
    references: list[str]
    headers: dict
    sent_at: datetime | None
    bounce: Bounce | None = None

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this one answers, the closest first."""
        ids = MESSAGE_ID.findall(self.in_reply_to) + list(reversed(self.references))
        if self.bounce and self.bounce.original_message_id:
            ids.insert(0, self.bounce.original_message_id)
        return list(dict.fromkeys(ids))


def read(message: Message) -> Letter:
    """Everything we need from `message`, decoded; never raises on malformed mail."""
    headers = header_dict(message)
    field = header_reader(headers)
    name, address = _first_address(field("From"))
    text = body_text(message)
    bounce = read_bounce(message) if is_delivery_report(message) else None
    return Letter(
        message_id=message_id_of(field, text),
        kind=classify(field, bounce),
        from_email=address,
        from_name=name,
        to=field("To"),
        subject=field("Subject"),
        text=text,
        excerpt=_stripped_text(message) or reply_excerpt(text),
        in_reply_to=field("In-Reply-To"),
        references=MESSAGE_ID.findall(field("References")),
        headers=headers,
        sent_at=_date(field("Date")),
        bounce=bounce,
    )


def classify(field, bounce: Bounce | None) -> str:
    if bounce is not None:
        return Kind.BOUNCE if bounce.failed else Kind.AUTO_REPLY
    if field("Auto-Submitted").strip().lower() not in ("", "no"):
        return Kind.AUTO_REPLY
    if field("X-Autoreply") or field("X-Autorespond"):
        return Kind.AUTO_REPLY
    if field("Precedence").strip().lower() in AUTO_PRECEDENCE:
        return Kind.AUTO_REPLY
    if AUTO_REPLY_SUBJECT.match(field("Subject")):
        return Kind.AUTO_REPLY
    return Kind.REPLY


def message_id_of(field, text: str) -> str:
    """The message's Message-ID; one derived from its content when it has none (or a broken
    one), the same however often and by whichever channel it arrives."""
    found = MESSAGE_ID.findall(field("Message-ID"))
    if found and len(found[0]) <= 500:
        return found[0]
    digest = hashlib.sha256()
    for name in ("From", "To", "Cc", "Date", "Subject", "In-Reply-To", "References"):
        digest.update(f"{name}: {field(name)}\n".encode())
    digest.update(text.encode())
    return f"<{digest.hexdigest()[:40]}@no-message-id.invalid>"


def _first_address(value: str) -> tuple[str, str]:
    for name, address in getaddresses([value]):
        address = address.strip().lower()
        try:
            validate_email(address)
        except ValidationError:
            continue
        return name.strip(), address[:254]
    return "", ""


def _date(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not datetime(1990, 1, 1, tzinfo=UTC) < moment < timezone.now() + timedelta(days=366):
        return None
    return moment


# --- Bodies ---------------------------------------------------------------------------------


def body_text(message: Message) -> str:
    """The message's own text: its first text/plain part, else its HTML as text; attached
    messages (a bounce's original, a forward) are not part of it."""
    plain = html = None
    for part in _body_parts(message):
        subtype = part.get_content_subtype()
        if subtype == "plain" and plain is None:
            plain = part_text(part)
        elif subtype == "html" and html is None:
            html = part_text(part)
    text = plain if plain and plain.strip() else html_to_text(html or "")
    text = re.sub(r"\r\n?", "\n", clean(text)).strip()
    return text[:MAX_TEXT]


def _body_parts(part: Message):
    if part.get_content_maintype() == "message":
        return  # an attached message, a DSN report: not the body
    if part.is_multipart():
        for subpart in part.get_payload():
            yield from _body_parts(subpart)
    elif part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment":
        yield part


def _stripped_text(message: Message) -> str:
    """Some ESPs (Postmark, Mailgun) send the reply without its quoted part: use it."""
    stripped = getattr(message, "stripped_text", None)
    return _shorten(clean(stripped)) if isinstance(stripped, str) and stripped.strip() else ""


class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote", "table"}
    SKIP = {"script", "style", "head", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html[: MAX_TEXT * 4])
    extractor.close()
    lines = (
        re.sub(r"[ \t\xa0]+", " ", line).strip() for line in "".join(extractor.chunks).split("\n")
    )
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# Where the quoted original starts in a reply, in Russian and English mail programs.
QUOTE_START = re.compile(
    r"^\s*(>"
    r"|-{2,}\s*(original message|forwarded message|исходное сообщение|пересылаемое сообщение)"
    r"|_{10,}"
    r"|(from|от|sent|отправлено):\s.*"
    r"|on\s.*\bwrote:\s*$"
    r"|.*\d.*<[^<>@\s]+@[^<>\s]+>\s*(wrote|писал\(а\)|пишет)?:\s*$"
    r")",
    re.IGNORECASE,
)


def reply_excerpt(text: str) -> str:
    """The start of what the sender wrote, without the quoted message below it."""
    lines = text.split("\n")
    own = []
    for number, line in enumerate(lines):
        # Gmail may wrap its "On ..., X <x@y> wrote:" line in two.
        joined = line + " " + lines[number + 1] if number + 1 < len(lines) else line
        if QUOTE_START.match(line) or (
            line.lower().startswith("on ") and QUOTE_START.match(joined)
        ):
            break
        if line.strip() == "--":
            break  # the signature
        own.append(line)
    return _shorten("\n".join(own)) or _shorten(text)


def _shorten(text: str) -> str:
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text if len(text) <= MAX_EXCERPT else text[: MAX_EXCERPT - 1].rstrip() + "…"
