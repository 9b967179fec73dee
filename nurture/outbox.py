"""Keeping the outbox moving: retries that are due, messages whose task was lost, and sends
whose worker died mid-send. Each returns what it found; the task layer publishes.
"""

from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from nurture.models import OutboundMessage
from nurture.services import complete_if_last, tell_manager

REQUEUE_AFTER = timedelta(minutes=10)


def requeue_due_retries(*, now: datetime | None = None) -> list[int]:
    """The messages whose retry time has come, to go back to the workers."""
    now = now or timezone.now()
    ids = list(
        OutboundMessage.objects.filter(
            state=OutboundMessage.State.RETRY, retry_at__lte=now
        ).values_list("pk", flat=True)[:10_000]
    )
    return ids


def requeue_lost_sends(*, now: datetime | None = None) -> list[int]:
    """A message still queued long after it was dispatched lost its task (the broker was down
    when the dispatch committed, or dropped the task): it is to be published again, at most
    every REQUEUE_AFTER. Safe, because a task for a message that is no longer queued does
    nothing. Returns those messages' ids."""
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
