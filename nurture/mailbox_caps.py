"""Each manager's mailbox caps (emails per minute and per day): which due sends may go now, and
which wait for the next free slot."""

import time as clock
from collections import Counter
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from nurture.models import MailboxLimit, OutboundMessage


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


def apply_mailbox_caps(enrollments, now: datetime, usage: MailboxUsage | None = None):
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
