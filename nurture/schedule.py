"""When sends happen: the company calendar from settings and the admin, in the lead's time zone."""

import zoneinfo
from datetime import datetime, timedelta

from django.conf import settings

from nurture.calendar import Shift, WorkingCalendar, get_calendar
from nurture.models import CalendarDay, OutboundMessage, Sequence

# A send dispatched later than this after its planned moment (the system was down, a mailbox
# cap held it back) starts the next interval from when it really went, so sends never bunch up.
LATE_GRACE = timedelta(minutes=15)

# A send this soon after its planned moment is on time, even if the window closed in between:
# beat ticks once a minute, and a worker takes a moment to get to a message. Later than that (the
# system was down), it goes only when the window is open again.
ON_TIME = timedelta(minutes=2)


def company_calendar() -> WorkingCalendar:
    """The country calendar from settings with the company's own days from the admin."""
    days = CalendarDay.objects.values_list("date", "kind")
    return get_calendar(
        days_off=[day for day, kind in days if kind == CalendarDay.Kind.DAY_OFF],
        working_days=[day for day, kind in days if kind == CalendarDay.Kind.WORKING_DAY],
    )


def time_zone_named(name: str) -> zoneinfo.ZoneInfo:
    """A lead's time zone from its `time_zone` field: empty means the company's."""
    return zoneinfo.ZoneInfo(name or settings.TIME_ZONE)


def plan_from(
    sequence: Sequence, time_zone: str, base: datetime, calendar: WorkingCalendar
) -> tuple[datetime, list[Shift]]:
    """The send `sequence`'s interval after `base`, in its sending window in the time zone named
    `time_zone` (a lead's field: empty is the company's), and the reasons it moved. Every plan
    (the first send, the next one, a preview, the dispatcher's) is this one computation."""
    return calendar.plan_send(
        base,
        sequence.interval_working_days,
        sequence.window_start,
        sequence.window_end,
        time_zone_named(time_zone),
    )


def first_send(
    sequence: Sequence, lead, enrolled_at: datetime, calendar: WorkingCalendar
) -> tuple[datetime, list[Shift]]:
    return plan_from(sequence, lead.time_zone, enrolled_at, calendar)


def next_send(
    sequence: Sequence, lead, planned: datetime, now: datetime, calendar: WorkingCalendar
) -> tuple[datetime, list[Shift]]:
    """The send after one planned at `planned` and dispatched at `now`."""
    return plan_from(sequence, lead.time_zone, next_base(planned, now), calendar)


def next_base(planned: datetime, now: datetime) -> datetime:
    """Where the next interval starts counting from: the planned moment, unless it went late."""
    return planned if now - planned <= LATE_GRACE else now


def retry_time(message, earliest: datetime, planner: "Planner | None" = None) -> datetime:
    """When `message` (an OutboundMessage that failed for now) is tried again: the first moment
    at or after `earliest` (now plus its backoff) inside its sequence's window, on a working
    day, in its lead's time zone. A batch passes one `planner`, so the calendar is read once."""
    enrollment = message.enrollment
    planner = planner or Planner()
    return planner.first_allowed(enrollment.sequence, enrollment.lead.time_zone, earliest)


def message_held_until(message, now: datetime, planner: "Planner") -> datetime | None:
    """For the worker about to send `message`: None if it may go at `now`, else the first
    moment it may. Its task came late when the workers or the broker were down: it waits for
    the window instead of going out at night."""
    planned = message.scheduled_for
    if message.state == OutboundMessage.State.RETRY and message.retry_at:
        planned = message.retry_at
    enrollment = message.enrollment
    return planner.held_until(enrollment.sequence, enrollment.lead.time_zone, planned, now)


class Planner:
    """`next_send`, and the first moment a send may go, for many enrollments at once, memoised.

    The dispatcher asks for thousands of rows in a batch, and most share their sequence, time
    zone and base moment (everything due since the last tick, or held back, counts from `now`),
    so the calendar works once per distinct combination. It remembers `plan_from`'s answers, so
    they are `next_send`'s; a lead is given by its `time_zone` field. Use one per batch: it
    keeps the calendar it was given (without one, it reads the company's when first needed)
    and never forgets an answer.
    """

    def __init__(self, calendar: WorkingCalendar | None = None):
        self._calendar = calendar
        self._answers: dict[tuple, datetime] = {}

    @property
    def calendar(self) -> WorkingCalendar:
        if self._calendar is None:
            self._calendar = company_calendar()
        return self._calendar

    def next_send(
        self, sequence: Sequence, time_zone: str, planned: datetime, now: datetime
    ) -> datetime:
        return self.plan_from(sequence, time_zone, next_base(planned, now))

    def plan_from(self, sequence: Sequence, time_zone: str, base: datetime) -> datetime:
        key = ("send", *_plan_key(sequence), time_zone, base)
        if (answer := self._answers.get(key)) is None:
            answer, _ = plan_from(sequence, time_zone, base, self.calendar)
            self._answers[key] = answer
        return answer

    def first_allowed(self, sequence: Sequence, time_zone: str, moment: datetime) -> datetime:
        """The first moment at or after `moment` inside `sequence`'s window on a working day,
        in the time zone named `time_zone`."""
        key = ("slot", *_plan_key(sequence), time_zone, moment)
        if (answer := self._answers.get(key)) is None:
            answer, _ = self.calendar.fit_into_window(
                moment, sequence.window_start, sequence.window_end, time_zone_named(time_zone)
            )
            self._answers[key] = answer
        return answer

    def held_until(
        self, sequence: Sequence, time_zone: str, planned: datetime, now: datetime
    ) -> datetime | None:
        """None if a send planned at `planned` may go at `now`, else the first moment it may:
        inside the window on a working day, or up to ON_TIME after the window closed when it
        is no more than ON_TIME late."""
        allowed = self.first_allowed(sequence, time_zone, now)
        if allowed == now:
            return None
        a_tick_ago = now - ON_TIME
        if (
            now - planned <= ON_TIME
            and self.first_allowed(sequence, time_zone, a_tick_ago) == a_tick_ago
        ):
            return None
        return allowed


def _plan_key(sequence: Sequence) -> tuple:
    return (
        sequence.pk,
        sequence.interval_working_days,
        sequence.window_start,
        sequence.window_end,
    )
