"""The dispatcher: every due enrollment gets its next message in the outbox, once.

Beat runs it every minute (`nurture.tasks.dispatch_due`); it only writes rows and returns the
ids of the messages it created, committed: handing them to the workers is the task's job.
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from crm.bulk import insert_rows, update_rows
from nurture import schedule, selectors
from nurture.mailbox_caps import MailboxUsage, apply_mailbox_caps
from nurture.models import Enrollment, OutboundMessage, Sequence
from nurture.services import HaltReason, halt

# A batch of 5000 holds its rows' locks for under a second and dispatched a backlog about half
# again as fast as batches of 1000 (benchmarks/nurture.py).
BATCH_SIZE = 5000


def dispatch_due(*, now: datetime | None = None, batch_size: int = BATCH_SIZE) -> list[int]:
    """Create the next message of every enrollment that is due; return the new messages' ids."""
    return [pk for batch in dispatch_batches(now=now, batch_size=batch_size) for pk in batch]


def dispatch_batches(
    *, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> Iterator[list[int]]:
    """`dispatch_due` a batch at a time: yields the ids each batch created once it committed
    (inside a caller's transaction, once it is written), so its sends can start at once.

    Each batch claims its enrollments with SKIP LOCKED, so any number of dispatchers may run at
    once, and the unique (enrollment, number) pair makes a second copy of a message impossible.
    """
    now = now or timezone.now()
    if not _due(now).order_by("next_send_at").values_list("pk")[:1]:
        # The usual minute: one look at the start of the due index, and no transaction.
        # (Ordered on purpose: unordered, the planner may read the whole table.)
        return
    usage = MailboxUsage(now)
    while True:
        claimed, created = _dispatch_batch(now, batch_size, usage)
        if created:
            yield created
        if claimed < batch_size:
            return


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
def _dispatch_batch(now: datetime, batch_size: int, usage: MailboxUsage) -> tuple[int, list[int]]:
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
            # An index lookup per row inside this one query: why the address is suppressed.
            selectors.suppression_reason("lead__email"),
        )[:batch_size]
    )
    if not claimed:
        return 0, []
    sequences = Sequence.objects.in_bulk({row[1] for row in claimed})
    planner = schedule.Planner(schedule.company_calendar())

    stopped = defaultdict(list)
    sendable = []
    for row in claimed:
        (
            pk,
            sequence_id,
            sent_count,
            planned,
            status_id,
            do_not_email,
            email,
            sender,
            zone,
            suppressed_for,
        ) = row
        sequence = sequences[sequence_id]
        if status_id != sequence.enrolling_status_id:
            stopped[HaltReason.STATUS_CHANGE].append(pk)
        elif suppressed_for:
            # The address is on the suppression list, whatever the lead's do-not-email says.
            stopped[HaltReason(suppressed_for)].append(pk)
        elif do_not_email or not email:
            stopped[HaltReason.UNSUBSCRIBE].append(pk)
        else:
            sendable.append(_Due(pk, sequence, sent_count, planned, sender, email, zone))
    for reason, ids in stopped.items():
        halt(Enrollment.objects.filter(pk__in=ids), reason, now=now)

    allowed, held_back = apply_mailbox_caps(sendable, now, usage)
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
    ids = insert_rows(
        OutboundMessage,
        {
            "enrollment_id": [due.pk for due in allowed],
            "number": [due.sent_count for due in allowed],
            "sender_id": [due.sender_id for due in allowed],
            "to_email": [due.email for due in allowed],
        },
        scheduled_for=now,
        created_at=now,
    )
    _save_next_send_at(allowed, advance=True)
    return len(claimed), ids


def _save_next_send_at(dues: list[_Due], *, advance: bool = False) -> None:
    """Store each enrollment's next_send_at and, with `advance`, count one more message sent."""
    update_rows(
        Enrollment,
        [due.pk for due in dues],
        {"next_send_at": [due.next_send_at for due in dues]},
        add={"sent_count": 1} if advance else None,
    )
