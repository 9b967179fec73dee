"""The dispatcher: every due enrollment gets its next message in the outbox, once.

Beat runs it every minute (`nurture.tasks.dispatch_due`); it only writes rows and returns the
ids of the messages it created, committed: handing them to the workers is the task's job.
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import (
    Case,
    DateTimeField,
    ExpressionWrapper,
    F,
    OuterRef,
    Subquery,
    Value,
    When,
)
from django.utils import timezone

from crm.bulk import insert_rows, update_rows
from nurture import schedule, selectors
from nurture.mailbox_caps import MailboxUsage, apply_mailbox_caps
from nurture.models import Enrollment, OutboundMessage, Sequence
from nurture.services import HaltReason, halt

State = OutboundMessage.State

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


def _previous_went(now: datetime) -> Subquery:
    """For the claimed enrollments: when their previous message went, if it went late (more than
    LATE_GRACE after it was dispatched: the workers were down, its retries waited for the
    window) or has not gone yet (then at the earliest `now`, or its retry time); else None.
    One lookup in the unique (enrollment, number) index per row, inside the claim."""
    pending = [State.QUEUED, State.SENDING, State.RETRY]
    went = Case(
        When(
            state=State.SENT,
            sent_at__gt=ExpressionWrapper(
                F("scheduled_for") + schedule.LATE_GRACE, output_field=DateTimeField()
            ),
            then=F("sent_at"),
        ),
        When(state=State.RETRY, retry_at__gt=now, then=F("retry_at")),
        When(state__in=pending, then=Value(now)),
        default=None,
        output_field=DateTimeField(),
    )
    previous = OutboundMessage.objects.filter(
        enrollment=OuterRef("pk"), number=OuterRef("sent_count")
    )
    return Subquery(previous.order_by().annotate(went=went).values("went")[:1])


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
            _previous_went(now),
        )[:batch_size]
    )
    if not claimed:
        return 0, []
    sequences = Sequence.objects.in_bulk({row[1] for row in claimed})
    planner = schedule.Planner(schedule.company_calendar())

    stopped = defaultdict(list)
    sendable, waiting = [], []
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
            previous_went,
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
            due = _Due(pk, sequence, sent_count, planned, sender, email, zone)
            if wait := _wait(due, previous_went, now, planner):
                due.next_send_at = wait
                waiting.append(due)
            else:
                sendable.append(due)
    for reason, ids in stopped.items():
        halt(Enrollment.objects.filter(pk__in=ids), reason, now=now)

    allowed, held_back = apply_mailbox_caps(sendable, now, usage)
    for due, room in held_back:
        due.next_send_at = planner.first_allowed(due.sequence, due.time_zone, room)
    _save_next_send_at(waiting + [due for due, _ in held_back])

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
            "sequence_id": [due.sequence.pk for due in allowed],
            "number": [due.sent_count for due in allowed],
            "sender_id": [due.sender_id for due in allowed],
            "lead_manager_id": [due.sender_id for due in allowed],  # the lead's manager
            "to_email": [due.email for due in allowed],
        },
        scheduled_for=now,
        created_at=now,
    )
    _save_next_send_at(allowed, advance=True)
    return len(claimed), ids


def _wait(
    due: _Due, previous_went: datetime | None, now: datetime, planner: schedule.Planner
) -> datetime | None:
    """None if `due` may be sent now; else when to look at it again. A send goes only inside its
    window, on a working day, in its lead's time zone (after an outage the backlog waits for the
    window to open), and a whole interval after the previous email actually went."""
    wait = planner.held_until(due.sequence, due.time_zone, due.next_send_at, now)
    if previous_went is not None:
        earliest = planner.plan_from(due.sequence, due.time_zone, previous_went)
        if earliest > now:
            wait = max(wait or earliest, earliest)
    return wait


def _save_next_send_at(dues: list[_Due], *, advance: bool = False) -> None:
    """Store each enrollment's next_send_at and, with `advance`, count one more message sent."""
    update_rows(
        Enrollment,
        [due.pk for due in dues],
        {"next_send_at": [due.next_send_at for due in dues]},
        add={"sent_count": 1} if advance else None,
    )
