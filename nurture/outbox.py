"""Keeping the outbox moving: retries that are due, messages whose task was lost or never
published, what the workers' journals say the server accepted, and sends whose worker died
mid-send. Each returns what it found; the task layer publishes.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext, gettext_noop

from crm.models import Lead
from nurture import journal, sending
from nurture.models import Enrollment, OutboundMessage
from nurture.services import complete_if_last, tell_manager

logger = logging.getLogger(__name__)
State = OutboundMessage.State

# When the send queue cannot be measured (or is not empty), a queued message is taken to have
# lost its task this long after it was published (NURTURE_LOST_TASK_SECONDS when it is empty).
REQUEUE_AFTER = timedelta(minutes=10)
# At most this many messages go back to the workers per tick (a broker outage's whole backlog,
# as a rule: at 100 a task, 500 tasks).
REQUEUE_AT_MOST = 50_000


def publish_failed(message_ids: list[int], error: str) -> int:
    """Their task could not be handed to the broker: they wait as retries due at once, which
    the next beat tick publishes again."""
    return OutboundMessage.objects.filter(pk__in=message_ids, state=State.QUEUED).update(
        state=State.RETRY,
        retry_at=timezone.now(),
        error=gettext("Could not be handed to the workers: %(error)s") % {"error": error},
    )


def requeue_due_retries(*, now: datetime | None = None) -> list[int]:
    """The messages whose retry time has come, to go back to the workers."""
    now = now or timezone.now()
    ids = list(
        OutboundMessage.objects.filter(
            state=OutboundMessage.State.RETRY, retry_at__lte=now
        ).values_list("pk", flat=True)[:REQUEUE_AT_MOST]
    )
    return ids


def requeue_lost_sends(*, now: datetime | None = None, queue_empty: bool = False) -> list[int]:
    """A message still queued after its task was published lost that task (the broker dropped
    it, or a worker took it and died before claiming it): it is to be published again. With
    the send queue empty (`queue_empty`: the evidence that no task for it is waiting) that is
    NURTURE_LOST_TASK_SECONDS after the last publish, else REQUEUE_AFTER. Safe, because a task
    for a message that is no longer queued does nothing. Returns those messages' ids."""
    now = now or timezone.now()
    lost_after = timedelta(seconds=settings.NURTURE_LOST_TASK_SECONDS)
    cutoff = now - (lost_after if queue_empty else REQUEUE_AFTER)
    ids = list(
        OutboundMessage.objects.filter(state=OutboundMessage.State.QUEUED, created_at__lt=cutoff)
        .filter(Q(retry_at=None) | Q(retry_at__lt=cutoff))
        .values_list("pk", flat=True)[:REQUEUE_AT_MOST]
    )
    if ids:
        # For a queued message, retry_at notes when its task was last published again.
        OutboundMessage.objects.filter(pk__in=ids, state=OutboundMessage.State.QUEUED).update(
            retry_at=now
        )
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
    # What a worker on this machine knows it sent (or never sent) is not unknown.
    try:
        replay_journals()
    except OSError:
        # A journal this process cannot read must not stop every dispatch: without it the
        # expired leases become unknown, the safe side (their managers are told).
        logger.exception("the send journals could not be read; reconciling without them")
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


def replay_journals() -> tuple[int, int]:
    """Write into the database what the journals on this machine say (`nurture.journal`):
    messages the server accepted become sent (with their timeline entry and notification, as
    a delivery records them), and messages given up before the server got them wait as retries
    due at once, as do those a dead process (or this thread, before) claimed and never tried.
    Return how many of each. Files of dead processes are removed once done; on a
    database error everything stays for the next attempt, and the error goes up."""
    files = list(journal.files())
    sent, unsent = {}, []
    for journal_file in files:
        untried = {}
        for entry in journal_file.entries:
            if "sent" in entry:
                sent[entry["sent"]] = entry
            elif "unsent" in entry:
                unsent += entry["unsent"]
            elif "claimed" in entry and journal_file.abandoned and entry["boot"] == journal.BOOT_ID:
                untried.update((claim[0], claim) for claim in entry["claimed"])
            elif "trying" in entry:
                untried.pop(entry["trying"], None)  # it may have gone: the reconciler's
        unsent += untried.values()
    try:
        with transaction.atomic():
            recorded = _record_accepted(sent)
            released = _release_unsent([claim for claim in unsent if claim[0] not in sent])
    except DatabaseError:
        for journal_file in files:
            journal.release(journal_file)
        raise
    for journal_file in files:
        journal.finish(journal_file)
    if recorded or released:
        logger.info("journals replayed: %s sent, %s given back to send", recorded, released)
    return recorded, released


def _record_accepted(entries: dict[int, dict]) -> int:
    if not entries:
        return 0
    candidates = OutboundMessage.objects.filter(
        pk__in=entries, state__in=[State.SENDING, State.UNKNOWN]
    )
    lead_ids = candidates.values("enrollment__lead_id")
    # The writers' lock order: lead, enrollment, message.
    list(Lead.objects.select_for_update().filter(pk__in=lead_ids).order_by("pk").values("pk"))
    list(
        Enrollment.objects.select_for_update()
        .filter(pk__in=candidates.values("enrollment_id"))
        .order_by("pk")
        .values("pk")
    )
    messages = [
        message
        for message in candidates.select_for_update(of=("self",))
        .select_related("enrollment__lead__responsible", "enrollment__sequence", "sender")
        .order_by("pk")
        if message.message_id == entries[message.pk]["message_id"]
    ]
    for message in messages:
        entry = entries[message.pk]
        message.state = State.SENT
        message.sent_at = parse_datetime(entry["at"])
        message.lease_expires_at = None
        message.error = ""
        message.provider_message_id = entry.get("provider_id") or message.message_id
    sending.record_sent(messages)
    return len(messages)


def _release_unsent(claims: list[list]) -> int:
    released = 0
    for pk, attempts, lease in claims:
        # Only the very claim the journal speaks of: not a later one of the same message.
        released += OutboundMessage.objects.filter(
            pk=pk, state=State.SENDING, attempts=attempts, lease_expires_at=parse_datetime(lease)
        ).update(
            state=State.RETRY,
            retry_at=timezone.now(),
            attempts=F("attempts") - 1,  # it never reached the server
            lease_expires_at=None,
            error=gettext("The database failed before this email was sent; it goes again."),
        )
    return released
