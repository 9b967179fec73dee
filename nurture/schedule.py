"""When sends happen: the company calendar from settings and the admin, in the lead's time zone."""

import zoneinfo
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from nurture.calendar import Shift, WorkingCalendar, get_calendar
from nurture.models import CalendarDay, Sequence

# A send dispatched later than this after its planned moment (the system was down, a mailbox
# cap held it back) starts the next interval from when it really went, so sends never bunch up.
LATE_GRACE = timedelta(minutes=15)


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


def _free_moment(now: datetime, day_full: bool) -> datetime:
    if day_full:
        local = timezone.localtime(now)
        return local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


class Planner:
    """`next_send`, and the next free slot for a send a mailbox cap held back, for many
    enrollments at once, memoised.

    The dispatcher asks for thousands of rows in a batch, and most share their sequence, time
    zone and base moment (everything due since the last tick, or held back, counts from `now`),
    so the calendar works once per distinct combination. It remembers `plan_from`'s answers, so
    they are `next_send`'s; a lead is given by its `time_zone` field. Use one per batch: it
    keeps the calendar it was given and never forgets an answer.
    """

    def __init__(self, calendar: WorkingCalendar):
        self.calendar = calendar
        self._answers: dict[tuple, datetime] = {}

    def next_send(
        self, sequence: Sequence, time_zone: str, planned: datetime, now: datetime
    ) -> datetime:
        base = next_base(planned, now)
        key = ("send", *_plan_key(sequence), time_zone, base)
        if (answer := self._answers.get(key)) is None:
            answer, _ = plan_from(sequence, time_zone, base, self.calendar)
            self._answers[key] = answer
        return answer

    def next_free_slot(
        self, sequence: Sequence, time_zone: str, now: datetime, *, day_full: bool
    ) -> datetime:
        moment = _free_moment(now, day_full)
        key = ("slot", *_plan_key(sequence), time_zone, moment)
        if (answer := self._answers.get(key)) is None:
            answer, _ = self.calendar.fit_into_window(
                moment, sequence.window_start, sequence.window_end, time_zone_named(time_zone)
            )
            self._answers[key] = answer
        return answer


def _plan_key(sequence: Sequence) -> tuple:
    return (
        sequence.pk,
        sequence.interval_working_days,
        sequence.window_start,
        sequence.window_end,
    )
