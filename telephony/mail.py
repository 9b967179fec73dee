"""Incoming mail: the one handler behind every channel (Anymail inbound webhooks, IMAP polling).

`receive_email` reads a message, decides what it is (a reply, an automatic reply, a bounce),
finds the lead it belongs to, stores it once, and tells the lead's timeline and nurturing.
"""

import hashlib
import logging
import re
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone
from django.utils.translation import gettext_noop

from crm.models import Activity, Lead, LeadStatus
from crm.services import record_activity
from nurture.models import Enrollment, OutboundMessage
from nurture.services import mark_address
from telephony.models import InboundContact, InboundEmail
from telephony.services import keep_rejected, record_inbound_contact

logger = logging.getLogger(__name__)

Kind = InboundEmail.Kind
MatchedBy = InboundEmail.MatchedBy

MAX_TEXT = 50_000  # characters of body text kept per message
MAX_EXCERPT = 500  # characters of the reply itself shown on the timeline
MAX_HEADER_VALUE = 2_000
MAX_HEADERS = 100
# Where a bounce's report is kept among the stored headers (no header can have this name).
REPORT_KEY = "(delivery status)"

# Subjects that out-of-office and other automatic replies start with, in Russian and English.
AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(\[?auto(matic)?[ -]?(reply|response|answer)\b|autoreply|autoresponse"
    r"|out of (the )?office\b"
    r"|автоответ|автоматический ответ|авто-ответ|вне офиса)",
    re.IGNORECASE,
)
AUTO_PRECEDENCE = {"auto_reply", "bulk", "junk"}
MESSAGE_ID = re.compile(r"<[^<>\s]+>")


@dataclass
class Bounce:
    """What a delivery status notification (RFC 3464) says."""

    failed: bool  # some recipient failed for good (not merely delayed or relayed)
    recipients: list[str] = field(default_factory=list)  # addresses that failed
    original_message_id: str = ""
    report: list[dict] = field(default_factory=list)  # per-recipient fields, for inspection


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


@dataclass
class Match:
    lead: Lead | None = None
    matched_by: str = MatchedBy.UNMATCHED
    outbound_message: OutboundMessage | None = None


# --- Writes ---------------------------------------------------------------------------------


def receive_email(message: Message, *, source: str) -> InboundEmail | None:
    """Store an incoming message and let it take effect; None if it was already received (by any
    channel) or is a copy of our own outgoing email.

    A reply matched to a lead is an inbound contact: on the timeline, the manager told, a nurtured
    lead back "in progress" (so its nurturing stops). An automatic reply is only put on the
    timeline. A bounce marks the lead's address and stops its nurturing. Mail that matches no
    lead is kept for a manager to attach by hand.
    """
    letter = read(message)
    if InboundEmail.objects.filter(message_id=letter.message_id).exists():
        return None
    if OutboundMessage.objects.filter(message_id=letter.message_id).exists():
        logger.info("%s: skipped a copy of our own email %s", source, letter.message_id)
        return None
    try:
        with transaction.atomic():
            return _store(letter, source)
    except IntegrityError:
        # The same message arrived by another channel at the same moment.
        if InboundEmail.objects.filter(message_id=letter.message_id).exists():
            return None
        raise


def _store(letter: Letter, source: str) -> InboundEmail:
    match = find_match(letter)
    headers = dict(letter.headers)
    if letter.bounce:
        headers[REPORT_KEY] = letter.bounce.report
    inbound = InboundEmail.objects.create(
        message_id=letter.message_id,
        source=source[:50],
        kind=letter.kind,
        from_email=letter.from_email,
        from_name=letter.from_name[:200],
        to=letter.to[:1000],
        subject=letter.subject[:1000],
        text=letter.text,
        in_reply_to=letter.in_reply_to[:1000],
        references=" ".join(letter.references),
        headers=headers,
        sent_at=letter.sent_at,
        lead=match.lead,
        matched_by=match.matched_by,
        outbound_message=match.outbound_message,
    )
    logger.info(
        "%s: %s %s from %s, lead %s (%s)",
        source,
        letter.kind,
        letter.message_id,
        letter.from_email,
        match.lead.pk if match.lead else None,
        match.matched_by or "unmatched",
    )
    if letter.kind == Kind.BOUNCE:
        _mark_bounced(inbound, letter.bounce, match)
    elif match.lead is not None and _is_from_the_lead(letter):
        _take_effect(inbound, match.lead, excerpt=letter.excerpt)
    return inbound


def _is_from_the_lead(letter: Letter) -> bool:
    """Not a delivery notice that only says "delayed", and not a manager's own letter in the
    thread (a copy of an answer to the lead)."""
    return not letter.bounce and not is_our_address(letter.from_email)


def is_our_address(address: str) -> bool:
    if not address:
        return False
    if address == settings.DEFAULT_FROM_EMAIL.lower():
        return True
    return get_user_model().objects.filter(email__iexact=address).exists()


@transaction.atomic
def attach_to_lead(inbound_email: InboundEmail, lead: Lead, by) -> bool:
    """A manager says whose an unmatched letter is: it is attached to `lead` and counts as if it
    had been matched (a reply is an inbound contact, a bounce marks the address). False, and
    nothing changed, when the letter already has a lead."""
    attached = InboundEmail.objects.filter(pk=inbound_email.pk, lead=None).update(
        lead=lead, matched_by=MatchedBy.MANUAL
    )
    if not attached:
        return False
    inbound_email.lead, inbound_email.matched_by = lead, MatchedBy.MANUAL
    logger.info("incoming email %s attached to lead %s by %s", inbound_email.pk, lead.pk, by)
    if inbound_email.kind == Kind.BOUNCE:
        _mark(lead, inbound_email, {"attached_by": getattr(by, "pk", None)})
    else:
        _take_effect(inbound_email, lead, attached_by=by)
    return True


def _take_effect(inbound: InboundEmail, lead: Lead, *, excerpt: str = "", attached_by=None):
    payload = {
        "inbound_email": inbound.pk,
        "from": inbound.from_email,
        "subject": inbound.subject,
        "excerpt": excerpt or reply_excerpt(inbound.text),
        "matched_by": inbound.matched_by,
    }
    if attached_by is not None:
        payload["attached_by"] = attached_by.get_username()
    now = timezone.now()
    # When the lead wrote, unless the sender's clock is clearly off.
    sent_at = inbound.sent_at
    at = sent_at if sent_at and now - timedelta(days=30) < sent_at <= now else now
    if inbound.kind == Kind.AUTO_REPLY:
        record_activity(
            lead,
            Activity.Kind.EMAIL_IN,
            gettext_noop("Automatic reply received"),
            actor=attached_by,
            payload=payload,
            at=at,
        )
        return
    record_inbound_contact(
        lead,
        InboundContact.Channel.EMAIL,
        inbound.message_id,
        at=at,
        summary=gettext_noop("Email received"),
        payload=payload,
        subject=inbound.subject,
    )


def _mark_bounced(inbound: InboundEmail, bounce: Bounce, match: Match) -> None:
    """The leads whose address failed are marked not to be emailed; their nurturing stops."""
    if match.matched_by == MatchedBy.THREAD:
        lead = match.lead
        if bounce.recipients and lead.email not in bounce.recipients:
            # The lead's address has changed since that email: the new one may work.
            logger.info("bounce %s is for an old address of lead %s", inbound.pk, lead.pk)
            return
        leads = [lead]
    else:
        leads = list(Lead.objects.filter(email__in=bounce.recipients)) if bounce.recipients else []
    for lead in leads:
        _mark(lead, inbound, {"recipients": bounce.recipients})


def _mark(lead: Lead, inbound: InboundEmail, details: dict) -> None:
    reports = inbound.headers.get(REPORT_KEY)
    report = reports[0] if isinstance(reports, list) and reports else {}
    mark_address(
        lead,
        Lead.EmailStatus.BOUNCED,
        Enrollment.HaltReason.BOUNCE,
        details={
            "inbound_email": inbound.pk,
            "source": inbound.source,
            "status": report.get("status", ""),
            "diagnostic": report.get("diagnostic-code", ""),
            **details,
        },
    )


def reject(
    source: str,
    error: Exception | str,
    raw: bytes | str,
    headers: dict | None = None,
    *,
    message_id: str = "",
):
    """Keep a message that could not be handled, for inspection (once, however often it is
    delivered, when its Message-ID is known)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return keep_rejected(
        source[:50],
        clean(str(error))[:500],
        clean(raw)[: MAX_TEXT * 4],
        headers or {},
        identity=message_id,
    )


# --- Matching -------------------------------------------------------------------------------


def find_match(letter: Letter) -> Match:
    """Whose letter is it: the lead of the message it answers, else the lead with the sender's
    address (the one being nurtured first, then the latest), else nobody."""
    ids = letter.thread_ids
    if ids:
        messages = {
            message.message_id: message
            for message in OutboundMessage.objects.filter(message_id__in=ids).select_related(
                "enrollment__lead"
            )
        }
        for message_id in ids:
            if message_id in messages:
                message = messages[message_id]
                return Match(message.enrollment.lead, MatchedBy.THREAD, message)
    if letter.kind == Kind.BOUNCE:
        address = letter.bounce.recipients[0] if letter.bounce.recipients else ""
    else:
        address = letter.from_email
    lead = lead_for_address(address)
    if lead is not None:
        return Match(lead, MatchedBy.SENDER)
    return Match()


def lead_for_address(address: str) -> Lead | None:
    if not address:
        return None
    return (
        Lead.objects.filter(email=address.lower())  # lead addresses are stored in lower case
        .annotate(
            nurtured=Case(
                When(status__kind=LeadStatus.Kind.NURTURING, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("nurtured", "-created_at", "-pk")
        .first()
    )


# --- Reading --------------------------------------------------------------------------------


def read(message: Message) -> Letter:
    """Everything we need from `message`, decoded; never raises on malformed mail."""
    headers = header_dict(message)
    field = _lookup(headers)
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


def _lookup(headers: dict):
    """A case-insensitive reader of `headers`: field("message-id") -> the first value or ""."""
    lowered = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value[0] if isinstance(value, list) else value)
    return lambda name: lowered.get(name.lower(), "")


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
            plain = _decoded(part)
        elif subtype == "html" and html is None:
            html = _decoded(part)
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


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True) or b""
    if not isinstance(payload, bytes):
        return str(payload)
    payload = payload[: MAX_TEXT * 4]
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


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


# --- Delivery status notifications ----------------------------------------------------------


def is_delivery_report(message: Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == "delivery-status"
    )


def read_bounce(message: Message) -> Bounce:
    """The recipients that failed, and the Message-ID of the email that bounced."""
    bounce = Bounce(failed=False)
    for part in message.get_payload():  # the report's parts: text, status, the original
        content_type = part.get_content_type()
        if content_type in ("message/delivery-status", "message/global-delivery-status"):
            _read_status(part, bounce)
        elif content_type in ("message/rfc822", "message/global"):
            original = part.get_payload()
            if isinstance(original, list) and original:
                found = MESSAGE_ID.findall(_lookup(header_dict(original[0]))("Message-ID"))
                bounce.original_message_id = bounce.original_message_id or "".join(found[:1])
        elif content_type in ("text/rfc822-headers", "text/global-headers"):
            found = re.search(r"^message-id:\s*(<[^<>\s]+>)", _decoded(part), re.I | re.M)
            bounce.original_message_id = bounce.original_message_id or (
                found.group(1) if found else ""
            )
    return bounce


def _read_status(part: Message, bounce: Bounce) -> None:
    blocks = part.get_payload()
    if not isinstance(blocks, list):  # an unparsed report: read the fields from the text
        blocks = [_fields(chunk) for chunk in re.split(r"\n\s*\n", _decoded(part))]
    else:
        blocks = [{k.lower(): decode_words(v) for k, v in block.items()} for block in blocks]
    for fields in blocks[1:] if len(blocks) > 1 else blocks:
        action = fields.get("action", "").lower()
        recipient = fields.get("final-recipient") or fields.get("original-recipient") or ""
        address = recipient.split(";", 1)[-1].strip().strip("<>").lower()
        if not action and not address:
            continue
        bounce.report.append(
            {
                "final-recipient": address,
                "action": action,
                "status": fields.get("status", ""),
                "diagnostic-code": " ".join(fields.get("diagnostic-code", "").split()),
            }
        )
        if action == "failed":
            bounce.failed = True
            if address:
                bounce.recipients.append(address)


def _fields(chunk: str) -> dict:
    fields = {}
    for match in re.finditer(r"^([\w-]+):[ \t]*(.*(?:\n[ \t].*)*)", chunk, re.MULTILINE):
        fields[match.group(1).lower()] = decode_words(match.group(2))
    return fields
