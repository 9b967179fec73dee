"""Incoming mail's writes: `receive_email` reads a message, decides what it is (a reply, an
automatic reply, a bounce), finds the lead it belongs to, stores it once, and tells the lead's
timeline and nurturing; `attach_to_lead` does the same for mail a manager matches by hand;
`reject` keeps a message that could not be handled.
"""

import logging
from datetime import timedelta
from email.message import Message

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from crm.models import Activity, Lead
from crm.services import record_activity
from nurture.models import Enrollment, OutboundMessage
from nurture.services import mark_address
from telephony.mail.bounces import Bounce
from telephony.mail.decoding import MAX_TEXT, clean
from telephony.mail.letters import Letter, read, reply_excerpt
from telephony.mail.matching import Match, find_match, is_our_address
from telephony.models import InboundContact, InboundEmail
from telephony.services import keep_rejected, record_inbound_contact

logger = logging.getLogger(__name__)

Kind = InboundEmail.Kind
MatchedBy = InboundEmail.MatchedBy

# Where a bounce's report is kept among the stored headers (no header can have this name).
REPORT_KEY = "(delivery status)"


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
