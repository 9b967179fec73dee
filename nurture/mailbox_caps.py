"""Each manager's mailbox caps (emails per minute and per day): which due sends may go now, and
when each of the others finds room.

A backlog (after an outage, every send that was due at once) is spread rather than blasted: the
sends a mailbox cannot take this minute are given the following minutes, per_minute to a minute,
as long as the day's cap has room, and the rest the next day. Each later tick then finds only
about what it may send. The system's own address (leads without a manager) has the default caps.
"""

import time as clock
from collections import Counter, defaultdict
from datetime import datetime, timedelta

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
        self.limits: dict[int | None, MailboxLimit] = {}
        self.used: dict[int | None, dict[str, int]] = {}
        # Sends given a later minute of today in this run, per sender: kept across recounts, as
        # they are in no count until they are dispatched.
        self.spread: dict[int | None, int] = defaultdict(int)
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

    def _may_hold_back(self, sender: int | None, count: int) -> bool:
        if sender not in self.used:
            return True
        limit, used = self.limits[sender], self.used[sender]
        return (
            used["today"] + count > limit.per_day or used["this_minute"] + count > limit.per_minute
        )

    def _count(self, senders: set[int | None]) -> None:
        limits = {
            limit.user_id: limit for limit in MailboxLimit.objects.filter(user_id__in=senders)
        }
        whose = Q(sender_id__in=senders - {None})
        if None in senders:
            whose |= Q(sender_id=None)
        used = {
            row["sender_id"]: {"today": row["today"], "this_minute": row["this_minute"]}
            for row in OutboundMessage.objects.filter(
                whose,
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

    def room(self, sender: int | None) -> datetime | None:
        """None if `sender`'s mailbox may send one more now (and counts it), else the earliest
        moment it has room for one: a later minute of today, spread, or the next day."""
        limit, counts = self.limits[sender], self.used[sender]
        if counts["today"] < limit.per_day and counts["this_minute"] < limit.per_minute:
            counts["today"] += 1
            counts["this_minute"] += 1
            return None
        spread = self.spread[sender]
        if counts["today"] + spread >= limit.per_day or not limit.per_minute:
            return self.day_start + timedelta(days=1)  # local midnight: same wall clock, +1 day
        self.spread[sender] += 1
        return self.minute_start + timedelta(minutes=1 + spread // limit.per_minute)


def apply_mailbox_caps(enrollments, now: datetime, usage: MailboxUsage | None = None):
    """Split `enrollments` (anything with a `sender_id`; None is the system's own address) into
    those their mailbox may send now and those held back, each with the earliest moment its
    mailbox has room (to be fitted into the sending window). `usage` carries the counts from
    batch to batch of one dispatch run."""
    if not enrollments:
        return enrollments, []
    usage = usage or MailboxUsage(now)
    usage.prepare(Counter(e.sender_id for e in enrollments))
    allowed, held_back = [], []
    for enrollment in enrollments:
        if (room := usage.room(enrollment.sender_id)) is None:
            allowed.append(enrollment)
        else:
            held_back.append((enrollment, room))
    return allowed, held_back
