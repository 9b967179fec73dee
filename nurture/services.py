"""Writes for nurturing: enrolling leads, halting, and dispatching what is due."""

import logging
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop, override

from crm.models import Activity, Lead
from crm.services import notify, record_activity
from nurture import schedule
from nurture.models import Enrollment, MailboxLimit, OutboundMessage, Sequence

logger = logging.getLogger(__name__)

HaltReason = Enrollment.HaltReason


def tell_manager(lead, message_template: str, /, **params) -> None:
    """Notify the lead's responsible manager, in the site's language."""
    with override(settings.LANGUAGE_CODE):
        notify(lead.responsible, gettext(message_template) % params, lead=lead)


@transaction.atomic
def enroll(lead, sequence: Sequence, *, now: datetime | None = None) -> Enrollment | None:
    """Start `sequence` for `lead` from its first message; None if one is already running."""
    now = now or timezone.now()
    send_at, _ = schedule.first_send(sequence, lead, now, schedule.company_calendar())
    try:
        with transaction.atomic():
            enrollment = Enrollment.objects.create(
                lead=lead, sequence=sequence, enrolled_at=now, next_send_at=send_at
            )
    except IntegrityError:
        return None
    return enrollment


def enroll_for_status(lead, status_code: str) -> list[Enrollment]:
    sequences = Sequence.objects.filter(is_active=True, enrolling_status__code=status_code)
    return [e for e in (enroll(lead, sequence) for sequence in sequences) if e]


@transaction.atomic
def halt(enrollments, reason: str, *, now: datetime | None = None) -> int:
    """Stop the active ones among `enrollments` for good; messages not yet sent are cancelled.

    The enrollment rows are locked first, so a send that is checking them right now either
    finishes before this commits or sees the halt and does not go out.
    """
    now = now or timezone.now()
    ids = list(
        enrollments.select_for_update()
        .filter(state=Enrollment.State.ACTIVE)
        .values_list("pk", flat=True)
    )
    if not ids:
        return 0
    Enrollment.objects.filter(pk__in=ids).update(
        state=Enrollment.State.HALTED, halt_reason=reason, next_send_at=None, ended_at=now
    )
    OutboundMessage.objects.filter(
        enrollment_id__in=ids,
        state__in=[OutboundMessage.State.QUEUED, OutboundMessage.State.RETRY],
    ).update(state=OutboundMessage.State.CANCELLED, retry_at=None)
    return len(ids)


def halt_for_lead(lead_id: int, reason: str) -> int:
    return halt(Enrollment.objects.filter(lead_id=lead_id), reason)


def halt_for_status_change(lead_id: int, old_code: str, reason: str) -> int:
    """The lead left `old_code`: the sequences that status enrolled it in stop."""
    return halt(
        Enrollment.objects.filter(lead_id=lead_id, sequence__enrolling_status__code=old_code),
        reason,
    )


@transaction.atomic
def unsubscribe(lead) -> None:
    """The lead asked for no more email: mark the address and stop every sequence."""
    mark_address(lead, Lead.EmailStatus.UNSUBSCRIBED, HaltReason.UNSUBSCRIBE)


@transaction.atomic
def mark_address(lead, email_status: str, reason: str, *, details: dict | None = None) -> int:
    """The lead's address must not be emailed again (unsubscribed, bounced, complained):
    mark it, stop the lead's sequences, note it on the timeline and tell the manager."""
    Lead.objects.filter(pk=lead.pk).update(do_not_email=True, email_status=email_status)
    lead.do_not_email, lead.email_status = True, email_status
    halted = halt(Enrollment.objects.filter(lead_id=lead.pk), reason)
    record_activity(
        lead,
        Activity.Kind.NOTE,
        gettext_noop("Email address marked not to be emailed"),
        payload={"email_status": email_status, "halted": halted, **(details or {})},
    )
    if halted:
        tell_manager(
            lead,
            gettext_noop("Nurturing of %(lead)s stopped: %(reason)s."),
            lead=lead.full_name or lead.email,
            reason=HaltReason(reason).label,
        )
    return halted


# What an ESP's tracking event means for the lead's address, and why nurturing stops.
DELIVERY_PROBLEMS = {
    "bounced": (Lead.EmailStatus.BOUNCED, HaltReason.BOUNCE),
    "rejected": (Lead.EmailStatus.BOUNCED, HaltReason.BOUNCE),
    "complained": (Lead.EmailStatus.COMPLAINED, HaltReason.COMPLAINT),
    "unsubscribed": (Lead.EmailStatus.UNSUBSCRIBED, HaltReason.UNSUBSCRIBE),
}


def handle_delivery_event(
    event_type: str, *, provider_message_id: str, recipient: str, metadata: dict, esp: str
) -> bool:
    """An ESP reported a bounce, rejection, complaint or unsubscribe: mark the lead's address and
    stop its nurturing. Other events are ignored. Returns whether any lead was found."""
    if event_type not in DELIVERY_PROBLEMS:
        return False
    message = _message_for_event(provider_message_id, metadata)
    if message is not None:
        leads = [message.enrollment.lead]
    elif recipient:
        # The address itself is bad: every lead that uses it is affected.
        leads = list(Lead.objects.filter(email=recipient.strip().lower()))
    else:
        leads = []
    if not leads:
        logger.info("%s %s event for an unknown message or address", esp, event_type)
        return False
    email_status, reason = DELIVERY_PROBLEMS[event_type]
    for lead in leads:
        mark_address(
            lead,
            email_status,
            reason,
            details={"esp": esp, "event": event_type, "provider_message_id": provider_message_id},
        )
    return True


def _message_for_event(provider_message_id: str, metadata: dict):
    messages = OutboundMessage.objects.select_related("enrollment__lead")
    our_id = str((metadata or {}).get("outbound_message", ""))
    if our_id.isdigit():
        message = messages.filter(pk=int(our_id)).first()
        if message:
            return message
    if provider_message_id:
        return messages.filter(provider_message_id=provider_message_id).first()
    return None


def halt_reason_for_status_change(reason: str) -> str:
    """A status change made because the lead replied or called says so in its reason."""
    return reason if reason in HaltReason.values else HaltReason.STATUS_CHANGE


@transaction.atomic
def restart(enrollment: Enrollment, *, now: datetime | None = None) -> Enrollment | None:
    """A fresh enrollment in the same sequence, from its first message; None (and nothing
    changed) when the lead is no longer in the status that enrolls it."""
    lead = Lead.objects.select_for_update().get(pk=enrollment.lead_id)
    if lead.status_id != enrollment.sequence.enrolling_status_id:
        return None
    halt(Enrollment.objects.filter(pk=enrollment.pk), HaltReason.MANUAL, now=now)
    return enroll(lead, enrollment.sequence, now=now)


# --- Dispatching ---------------------------------------------------------------------------


def dispatch_due(*, now: datetime | None = None, batch_size: int = 1000) -> list[int]:
    """Create the next message of every enrollment that is due; return the new messages' ids.

    Works in batches; each batch claims its enrollments with SKIP LOCKED, so any number of
    dispatchers may run at once, and the unique (enrollment, number) pair makes a second copy
    of a message impossible.
    """
    now = now or timezone.now()
    created: list[int] = []
    while True:
        claimed, batch = _dispatch_batch(now, batch_size)
        created += batch
        if claimed < batch_size:
            return created


@transaction.atomic
def _dispatch_batch(now: datetime, batch_size: int) -> tuple[int, list[int]]:
    """Claim up to `batch_size` due enrollments; return how many were claimed and the ids of
    the messages created for them."""
    claimed = list(
        Enrollment.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(state=Enrollment.State.ACTIVE, next_send_at__lte=now)
        .select_related("lead", "sequence")
        .order_by("next_send_at")[:batch_size]
    )
    if not claimed:
        return 0, []
    calendar = schedule.company_calendar()

    stopped = defaultdict(list)
    sendable = []
    for enrollment in claimed:
        lead, sequence = enrollment.lead, enrollment.sequence
        if lead.status_id != sequence.enrolling_status_id:
            stopped[HaltReason.STATUS_CHANGE].append(enrollment.pk)
        elif lead.do_not_email or not lead.email:
            stopped[HaltReason.UNSUBSCRIBE].append(enrollment.pk)
        else:
            sendable.append(enrollment)
    for reason, ids in stopped.items():
        halt(Enrollment.objects.filter(pk__in=ids), reason, now=now)

    allowed, held_back = _apply_mailbox_caps(sendable, now)
    for enrollment, day_full in held_back:
        enrollment.next_send_at = schedule.next_free_slot(
            enrollment.sequence, enrollment.lead, now, day_full=day_full, calendar=calendar
        )
    _save_next_send_at([enrollment for enrollment, _ in held_back])

    messages = []
    for enrollment in allowed:
        enrollment.sent_count += 1
        messages.append(
            OutboundMessage(
                enrollment=enrollment,
                number=enrollment.sent_count,
                sender_id=enrollment.lead.responsible_id,
                scheduled_for=now,
                to_email=enrollment.lead.email,
                created_at=now,
            )
        )
        if enrollment.sent_count >= enrollment.sequence.max_messages:
            enrollment.next_send_at = None
        else:
            enrollment.next_send_at, _ = schedule.next_send(
                enrollment.sequence, enrollment.lead, enrollment.next_send_at, now, calendar
            )
    OutboundMessage.objects.bulk_create(messages)
    _save_next_send_at(allowed, advance=True)

    ids = [message.pk for message in messages]
    if ids:
        transaction.on_commit(lambda: enqueue_sends(ids))
    return len(claimed), ids


def _save_next_send_at(enrollments, *, advance: bool = False) -> None:
    """One UPDATE per distinct next_send_at: most of a batch shares a few moments."""
    groups = defaultdict(list)
    for enrollment in enrollments:
        groups[enrollment.next_send_at].append(enrollment.pk)
    changes = {"sent_count": F("sent_count") + 1} if advance else {}
    for next_send_at, ids in groups.items():
        Enrollment.objects.filter(pk__in=ids).update(next_send_at=next_send_at, **changes)


def _apply_mailbox_caps(enrollments, now: datetime):
    """Split `enrollments` into those their manager's mailbox may send now and those held back
    (with whether the daily cap, rather than the per-minute one, is what is full)."""
    senders = {e.lead.responsible_id for e in enrollments if e.lead.responsible_id}
    if not senders:
        return enrollments, []
    limits = {limit.user_id: limit for limit in MailboxLimit.objects.filter(user_id__in=senders)}
    day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    minute_start = now.replace(second=0, microsecond=0)
    used = {
        row["sender_id"]: row
        for row in OutboundMessage.objects.filter(
            sender_id__in=senders, scheduled_for__gte=day_start, scheduled_for__lte=now
        )
        .values("sender_id")
        .annotate(
            today=Count("id"), this_minute=Count("id", filter=Q(scheduled_for__gte=minute_start))
        )
    }
    allowed, held_back = [], []
    for enrollment in enrollments:
        sender = enrollment.lead.responsible_id
        if sender is None:
            allowed.append(enrollment)
            continue
        limit = limits.get(sender) or MailboxLimit(
            per_minute=settings.NURTURE_MAILBOX_PER_MINUTE, per_day=settings.NURTURE_MAILBOX_PER_DAY
        )
        counts = used.setdefault(sender, {"today": 0, "this_minute": 0})
        if counts["today"] >= limit.per_day:
            held_back.append((enrollment, True))
        elif counts["this_minute"] >= limit.per_minute:
            held_back.append((enrollment, False))
        else:
            counts["today"] += 1
            counts["this_minute"] += 1
            allowed.append(enrollment)
    return allowed, held_back


def enqueue_sends(message_ids: list[int]) -> None:
    from nurture.tasks import send_message

    with send_message.app.producer_or_acquire() as producer:
        for message_id in message_ids:
            send_message.apply_async((message_id,), producer=producer)


def requeue_due_retries(*, now: datetime | None = None) -> list[int]:
    """Messages whose retry time has come go back to the workers."""
    now = now or timezone.now()
    ids = list(
        OutboundMessage.objects.filter(
            state=OutboundMessage.State.RETRY, retry_at__lte=now
        ).values_list("pk", flat=True)[:10_000]
    )
    if ids:
        enqueue_sends(ids)
    return ids


def reconcile_expired_leases(*, now: datetime | None = None) -> int:
    """A message whose sender died mid-send may or may not have gone out: never resend it
    blindly (a lead must never get the same email twice); mark it unknown and tell the manager."""
    now = now or timezone.now()
    expired = OutboundMessage.objects.filter(
        state=OutboundMessage.State.SENDING, lease_expires_at__lt=now
    ).select_related("enrollment__lead", "enrollment__sequence")
    count = 0
    for message in expired[:1000]:
        updated = OutboundMessage.objects.filter(
            pk=message.pk, state=OutboundMessage.State.SENDING
        ).update(
            state=OutboundMessage.State.UNKNOWN,
            error=gettext("The sender stopped before recording the outcome."),
        )
        if not updated:
            continue
        count += 1
        lead = message.enrollment.lead
        tell_manager(
            lead,
            gettext_noop(
                "Email %(number)d of %(total)d to %(lead)s may or may not have been sent: "
                "check your mailbox's Sent folder."
            ),
            number=message.number,
            total=message.enrollment.sequence.max_messages,
            lead=lead.full_name or lead.email,
        )
        _complete_if_last(message)
    return count


def _complete_if_last(message: OutboundMessage) -> None:
    enrollment = message.enrollment
    if message.number < enrollment.sequence.max_messages:
        return
    finished = Enrollment.objects.filter(pk=enrollment.pk, state=Enrollment.State.ACTIVE).update(
        state=Enrollment.State.COMPLETED, ended_at=timezone.now(), next_send_at=None
    )
    if finished:
        lead = enrollment.lead
        tell_manager(
            lead,
            gettext_noop("%(lead)s got all %(total)d emails of “%(sequence)s” and never answered."),
            lead=lead.full_name or lead.email,
            total=enrollment.sequence.max_messages,
            sequence=enrollment.sequence.name,
        )
        record_activity(
            lead,
            Activity.Kind.NOTE,
            gettext_noop("Nurturing completed without an answer"),
            payload={"enrollment": enrollment.pk},
        )
