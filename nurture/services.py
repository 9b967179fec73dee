"""Writes for nurturing: enrolling leads, halting, and dispatching what is due."""

import logging
import time as clock
from collections import Counter, defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from crm.models import Activity, Lead, Notification, StatusChangeCause
from crm.services import new_activity, new_notification, notify, record_activity
from nurture import schedule
from nurture.models import Enrollment, MailboxLimit, OutboundMessage, Sequence

logger = logging.getLogger(__name__)

HaltReason = Enrollment.HaltReason
REQUEUE_AFTER = timedelta(minutes=10)


def tell_manager(lead, message_template: str, /, **params) -> None:
    """Notify the lead's responsible manager, in the site's language."""
    notify(lead.responsible, message_template, params, lead=lead)


def manager_notification(lead, message_template: str, /, **params) -> Notification | None:
    """What `tell_manager` saves, not saved yet (for bulk_create)."""
    return new_notification(lead.responsible, message_template, params, lead=lead)


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
            lead=lead.display_name,
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


# Why nurturing stops when a status change had this cause; a person's change is a status change.
HALT_REASON_FOR_CAUSE = {
    StatusChangeCause.REPLY: HaltReason.REPLY,
    StatusChangeCause.CALL: HaltReason.CALL,
}


def halt_reason_for(cause: str) -> str:
    """The halt reason of nurturing stopped by a status change with this `cause`."""
    return HALT_REASON_FOR_CAUSE.get(cause, HaltReason.STATUS_CHANGE)


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


def dispatch_due(*, now: datetime | None = None, batch_size: int = 5000) -> list[int]:
    """Create the next message of every enrollment that is due; return the new messages' ids.

    Works in batches; each batch claims its enrollments with SKIP LOCKED, so any number of
    dispatchers may run at once, and the unique (enrollment, number) pair makes a second copy
    of a message impossible. A batch of 5000 holds its rows' locks for under a second and
    dispatched a backlog about half again as fast as batches of 1000 (benchmarks/nurture.py).
    """
    now = now or timezone.now()
    if not _due(now).order_by("next_send_at").values_list("pk")[:1]:
        # The usual minute: one look at the start of the due index, and no transaction.
        # (Ordered on purpose: unordered, the planner may read the whole table.)
        return []
    usage = MailboxUsage(now)
    created: list[int] = []
    while True:
        claimed, batch = _dispatch_batch(now, batch_size, usage)
        created += batch
        if claimed < batch_size:
            return created


def _due(now: datetime):
    return Enrollment.objects.filter(state=Enrollment.State.ACTIVE, next_send_at__lte=now)


@dataclass(slots=True)
class _Due:
    """A claimed enrollment: only what dispatching reads and writes, without model instances."""

    pk: int
    sequence: Sequence
    sent_count: int
    next_send_at: datetime
    sender_id: int | None
    email: str
    time_zone: str


@transaction.atomic
def _dispatch_batch(
    now: datetime, batch_size: int, usage: "MailboxUsage | None" = None
) -> tuple[int, list[int]]:
    """Claim up to `batch_size` due enrollments; return how many were claimed and the ids of
    the messages created for them."""
    claimed = list(
        _due(now)
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("next_send_at")
        .values_list(
            "pk",
            "sequence_id",
            "sent_count",
            "next_send_at",
            "lead__status_id",
            "lead__do_not_email",
            "lead__email",
            "lead__responsible_id",
            "lead__time_zone",
        )[:batch_size]
    )
    if not claimed:
        return 0, []
    sequences = Sequence.objects.in_bulk({row[1] for row in claimed})
    planner = schedule.Planner(schedule.company_calendar())

    stopped = defaultdict(list)
    sendable = []
    for row in claimed:
        pk, sequence_id, sent_count, planned, status_id, do_not_email, email, sender, zone = row
        sequence = sequences[sequence_id]
        if status_id != sequence.enrolling_status_id:
            stopped[HaltReason.STATUS_CHANGE].append(pk)
        elif do_not_email or not email:
            stopped[HaltReason.UNSUBSCRIBE].append(pk)
        else:
            sendable.append(_Due(pk, sequence, sent_count, planned, sender, email, zone))
    for reason, ids in stopped.items():
        halt(Enrollment.objects.filter(pk__in=ids), reason, now=now)

    allowed, held_back = _apply_mailbox_caps(sendable, now, usage)
    for due, day_full in held_back:
        due.next_send_at = planner.next_free_slot(
            due.sequence, due.time_zone, now, day_full=day_full
        )
    _save_next_send_at([due for due, _ in held_back])

    for due in allowed:
        due.sent_count += 1
        if due.sent_count >= due.sequence.max_messages:
            due.next_send_at = None
        else:
            due.next_send_at = planner.next_send(due.sequence, due.time_zone, due.next_send_at, now)
    ids = _create_messages(allowed, now)
    _save_next_send_at(allowed, advance=True)

    if ids:
        transaction.on_commit(lambda: enqueue_sends(ids))
    return len(claimed), ids


def _create_messages(dues: list[_Due], now: datetime) -> list[int]:
    """Insert message number `sent_count` of each of `dues`; return the new rows' ids.

    On PostgreSQL it is one INSERT ... SELECT from arrays of the four columns that differ from
    row to row: bulk_create prepares every field of every row in Python, which was most of the
    time a batch took. Elsewhere, bulk_create.
    """
    if not dues:
        return []
    if connection.vendor != "postgresql":
        messages = [
            OutboundMessage(
                enrollment_id=due.pk,
                number=due.sent_count,
                sender_id=due.sender_id,
                scheduled_for=now,
                to_email=due.email,
                created_at=now,
            )
            for due in dues
        ]
        OutboundMessage.objects.bulk_create(messages)
        return [message.pk for message in messages]
    varying = {
        "enrollment_id": [due.pk for due in dues],
        "number": [due.sent_count for due in dues],
        "sender_id": [due.sender_id for due in dues],
        "to_email": [due.email for due in dues],
    }
    # Every other column is the same for every row: its default (a field whose default must
    # differ per row, a uuid4 say, would have to join `varying`).
    template = OutboundMessage(scheduled_for=now, created_at=now)
    quote = connection.ops.quote_name
    columns, values, params = [], [], []
    for field in OutboundMessage._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(quote(field.column))
        if field.attname in varying:
            values.append(f"v.{quote(field.column)}")
        else:
            values.append(f"%s::{field.cast_db_type(connection)}")
            params.append(field.get_db_prep_save(field.pre_save(template, add=True), connection))
    meta = OutboundMessage._meta
    arrays = [f"%s::{meta.get_field(name).cast_db_type(connection)}[]" for name in varying]
    # Only names from the model's metadata are formatted in; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(values)} FROM unnest({', '.join(arrays)}) "
        f"AS v({', '.join(quote(meta.get_field(name).column) for name in varying)}) "
        f"RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *varying.values()])
        return [row[0] for row in cursor.fetchall()]


def _save_next_send_at(enrollments, *, advance: bool = False) -> None:
    """Store each enrollment's next_send_at and, with `advance`, count one more message sent.

    On PostgreSQL it is one UPDATE from two arrays, ids and moments; elsewhere one UPDATE per
    distinct next_send_at (most of a backlog shares a few moments). Not crm.bulk.update_each:
    its per-value preparation cost dispatch about 15 % (benchmarks/nurture.py).
    """
    if not enrollments:
        return
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Enrollment._meta.db_table)
        count = f", sent_count = {table}.sent_count + 1" if advance else ""
        ids = [e.pk for e in enrollments]
        with connection.cursor() as cursor:
            # "id = ANY(ids)" as well, or the planner may hash-join the whole table.
            cursor.execute(
                f"UPDATE {table} SET next_send_at = v.next_send_at{count} "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, next_send_at) "
                f"WHERE {table}.id = v.id AND {table}.id = ANY(%s::bigint[])",
                [ids, [e.next_send_at for e in enrollments], ids],
            )
        return
    groups = defaultdict(list)
    for enrollment in enrollments:
        groups[enrollment.next_send_at].append(enrollment.pk)
    changes = {"sent_count": F("sent_count") + 1} if advance else {}
    for next_send_at, ids in groups.items():
        Enrollment.objects.filter(pk__in=ids).update(next_send_at=next_send_at, **changes)


class MailboxUsage:
    """How much of each manager's mailbox caps is used at `now`, for one dispatch run.

    Counted from the outbox the first time a sender comes up, then kept up to date with the
    run's own sends: recounting the whole day's outbox for every batch made a large backlog
    quadratic. A sender is counted again whenever its caps could hold a send of the batch back,
    and every sender once its counts are REFRESH_SECONDS old, so what other dispatchers send at
    the same time is seen where it matters, as when every batch counted afresh.
    """

    REFRESH_SECONDS = 10.0

    def __init__(self, now: datetime):
        self.now = now
        self.day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
        self.minute_start = now.replace(second=0, microsecond=0)
        self.limits: dict[int, MailboxLimit] = {}
        self.used: dict[int, dict[str, int]] = {}
        self.counted_at = 0.0

    def prepare(self, wanted: Counter) -> None:
        """Make sure the counts for these senders (sender id -> sends wanted) are fit to use."""
        if clock.monotonic() - self.counted_at > self.REFRESH_SECONDS:
            self.limits.clear()
            self.used.clear()
            self.counted_at = clock.monotonic()
        stale = {sender for sender, count in wanted.items() if self._may_hold_back(sender, count)}
        if stale:
            self._count(stale)

    def _may_hold_back(self, sender: int, count: int) -> bool:
        if sender not in self.used:
            return True
        limit, used = self.limits[sender], self.used[sender]
        return (
            used["today"] + count > limit.per_day or used["this_minute"] + count > limit.per_minute
        )

    def _count(self, senders: set[int]) -> None:
        limits = {
            limit.user_id: limit for limit in MailboxLimit.objects.filter(user_id__in=senders)
        }
        used = {
            row["sender_id"]: {"today": row["today"], "this_minute": row["this_minute"]}
            for row in OutboundMessage.objects.filter(
                sender_id__in=senders,
                scheduled_for__gte=self.day_start,
                scheduled_for__lte=self.now,
            )
            .values("sender_id")
            .annotate(
                today=Count("id"),
                this_minute=Count("id", filter=Q(scheduled_for__gte=self.minute_start)),
            )
        }
        for sender in senders:
            self.limits[sender] = limits.get(sender) or MailboxLimit(
                per_minute=settings.NURTURE_MAILBOX_PER_MINUTE,
                per_day=settings.NURTURE_MAILBOX_PER_DAY,
            )
            self.used[sender] = used.get(sender, {"today": 0, "this_minute": 0})


def _apply_mailbox_caps(enrollments, now: datetime, usage: MailboxUsage | None = None):
    """Split `enrollments` (anything with a `sender_id`) into those their manager's mailbox may
    send now and those held back (with whether the daily cap, rather than the per-minute one,
    is what is full). `usage` carries the counts from batch to batch of one dispatch run."""
    wanted = Counter(e.sender_id for e in enrollments if e.sender_id)
    if not wanted:
        return enrollments, []
    usage = usage or MailboxUsage(now)
    usage.prepare(wanted)
    allowed, held_back = [], []
    for enrollment in enrollments:
        sender = enrollment.sender_id
        if sender is None:
            allowed.append(enrollment)
            continue
        limit, counts = usage.limits[sender], usage.used[sender]
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
    """Hand the messages to the workers, NURTURE_SEND_BATCH to a send_messages task. Where the
    transport can (kombu 5.7+ on Redis), the tasks go out in pipelined groups rather than one
    round trip each; elsewhere, and in eager mode, one by one."""
    from nurture.tasks import send_messages

    size = settings.NURTURE_SEND_BATCH
    with send_messages.app.producer_or_acquire() as producer:
        batch = getattr(producer, "batch", None)
        with batch() if batch is not None else nullcontext():
            for start in range(0, len(message_ids), size):
                chunk = list(message_ids[start : start + size])
                send_messages.apply_async((chunk,), producer=producer)


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


def requeue_lost_sends(*, now: datetime | None = None) -> list[int]:
    """A message still queued long after it was dispatched lost its task (the broker was down
    when the dispatch committed, or dropped the task): publish it again, at most every
    REQUEUE_AFTER. Safe, because a task for a message that is no longer queued does nothing."""
    now = now or timezone.now()
    cutoff = now - REQUEUE_AFTER
    ids = list(
        OutboundMessage.objects.filter(state=OutboundMessage.State.QUEUED, created_at__lt=cutoff)
        .filter(Q(retry_at=None) | Q(retry_at__lt=cutoff))
        .values_list("pk", flat=True)[:1000]
    )
    if ids:
        # For a queued message, retry_at notes when its task was last published again.
        OutboundMessage.objects.filter(pk__in=ids, state=OutboundMessage.State.QUEUED).update(
            retry_at=now
        )
        enqueue_sends(ids)
    return ids


def reconcile_expired_leases(*, now: datetime | None = None) -> int:
    """A message whose sender died mid-send may or may not have gone out: never resend it
    blindly (a lead must never get the same email twice); mark it unknown and tell the manager."""
    now = now or timezone.now()
    expired = OutboundMessage.objects.filter(
        state=OutboundMessage.State.SENDING, lease_expires_at__lt=now
    )
    if not expired.exists():  # the usual minute: one look at the small lease index
        return 0
    expired = expired.select_related("enrollment__lead", "enrollment__sequence")
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
            lead=lead.display_name,
        )
        complete_if_last([message])
    return count


def complete_if_last(messages: list[OutboundMessage]) -> None:
    """The enrollments whose last message is among `messages` (sent, failed or unknown) are
    completed, and each manager is told the lead never answered."""
    last = {
        m.enrollment_id: m.enrollment
        for m in messages
        if m.number >= m.enrollment.sequence.max_messages
    }
    if not last:
        return
    finished = list(
        Enrollment.objects.select_for_update()
        .filter(pk__in=last, state=Enrollment.State.ACTIVE)
        .values_list("pk", flat=True)
    )
    if not finished:
        return
    now = timezone.now()
    Enrollment.objects.filter(pk__in=finished).update(
        state=Enrollment.State.COMPLETED, ended_at=now, next_send_at=None
    )
    notifications, activities = [], []
    for enrollment in (last[pk] for pk in finished):
        lead = enrollment.lead
        notifications.append(
            manager_notification(
                lead,
                gettext_noop(
                    "%(lead)s got all %(total)d emails of “%(sequence)s” and never answered."
                ),
                lead=lead.display_name,
                total=enrollment.sequence.max_messages,
                sequence=enrollment.sequence.name,
            )
        )
        activities.append(
            new_activity(
                lead,
                Activity.Kind.NOTE,
                gettext_noop("Nurturing completed without an answer"),
                payload={"enrollment": enrollment.pk},
                at=now,
            )
        )
    Notification.objects.bulk_create([n for n in notifications if n is not None])
    Activity.objects.bulk_create(activities)
