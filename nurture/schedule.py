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


def lead_time_zone(lead) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(lead.time_zone or settings.TIME_ZONE)


def first_send(
    sequence: Sequence, lead, enrolled_at: datetime, calendar: WorkingCalendar
) -> tuple[datetime, list[Shift]]:
    return calendar.plan_send(
        enrolled_at,
        sequence.interval_working_days,
        sequence.window_start,
        sequence.window_end,
        lead_time_zone(lead),
    )


def next_send(
    sequence: Sequence, lead, planned: datetime, now: datetime, calendar: WorkingCalendar
) -> tuple[datetime, list[Shift]]:
    """The send after one planned at `planned` and dispatched at `now`."""
    base = planned if now - planned <= LATE_GRACE else now
    return first_send(sequence, lead, base, calendar)


def next_free_slot(
    sequence: Sequence, lead, now: datetime, *, day_full: bool, calendar: WorkingCalendar
) -> datetime:
    """Where a send held back by a mailbox cap goes: the next minute, or the next day."""
    if day_full:
        local = timezone.localtime(now)
        moment = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    else:
        moment = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    slot, _ = calendar.fit_into_window(
        moment, sequence.window_start, sequence.window_end, lead_time_zone(lead)
    )
    return slot
