"""Working-day calendar for the lead-nurturing engine.

A :class:`WorkingCalendar` answers "is this a working day?" for one country (optionally a
subdivision), a company weekend and company-specific overrides, and plans sends: "N working days
after this moment, inside the sending window, in the lead's time zone".

Public holidays, transferred days off and transferred working Saturdays (Russia's production
calendar) come from the ``holidays`` library: its ``is_working_day()`` already combines the
entity's ``weekend``, its holidays and its ``weekend_workdays``, so this module only layers the
company's own ``days_off`` / ``working_days`` on top and never re-implements that logic.

Which :class:`Shift` entries explain a planned send (see ``WorkingCalendar.plan_send``):

* While counting working days forward, every skipped holiday gives ``Shift("holiday", day,
  name)`` and every skipped company day off gives ``Shift("day_off", day)``. Within one run of
  consecutive non-working days each holiday name (and the company day off) is reported once, on
  its first day, so Russia's New Year break (Jan 1-8) gives "New Year Holidays" and "Christmas
  Day" instead of eight entries. Plain weekends are what "working days" means, so they are not
  reported while counting.
* When the send has to move to reach the sending window, one ``Shift("window", day)`` is added
  (``day`` is the working day whose time of day fell outside the window); if that pushes the send
  to a later day, the non-working days passed over are reported as above and, because the send
  left its planned day, a plain weekend run is reported too, as ``Shift("weekend", first_day)``.
* ``fit_into_window`` reports the same way: a "window" Shift when the time of day on a working day
  was outside the window, plus a Shift for every run of non-working days it moved past.
"""

import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

import holidays
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext

ONE_DAY = timedelta(days=1)

# The holidays objects are shared between calendars and fill in years lazily on first access
# (the library adds the year to ``years`` *before* populating it), so every access goes through
# this lock: another thread must never read a half-populated year.
_HOLIDAYS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Shift:
    """Why a planned send moved, for showing next to the send in the UI."""

    HOLIDAY: ClassVar[str] = "holiday"
    WEEKEND: ClassVar[str] = "weekend"
    DAY_OFF: ClassVar[str] = "day_off"
    WINDOW: ClassVar[str] = "window"
    CAP: ClassVar[str] = "cap"

    kind: str
    day: date
    name: str = ""

    def __str__(self) -> str:
        day = self.day.isoformat()
        if self.kind == self.HOLIDAY:
            return gettext("shifted past %(name)s (%(day)s)") % {"name": self.name, "day": day}
        if self.kind == self.WEEKEND:
            return gettext("shifted past the weekend (%(day)s)") % {"day": day}
        if self.kind == self.DAY_OFF:
            return gettext("shifted past a company day off (%(day)s)") % {"day": day}
        if self.kind == self.WINDOW:
            return gettext("moved into the sending window")
        if self.kind == self.CAP:
            return gettext("postponed by the sending limit (%(day)s)") % {"day": day}
        return gettext("shifted (%(day)s)") % {"day": day}


class WorkingCalendar:
    """Working days of one country (and subdivision), with a company weekend and overrides.

    ``weekend`` holds weekday numbers (Monday=0). ``days_off`` and ``working_days`` are
    company-specific dates that override the country calendar (a company day off on a weekday,
    an extra working day on a holiday or weekend). ``language`` is the holidays library language
    for holiday names; by default it follows Django's active language ("ru" for Russian,
    "en_US" otherwise) and falls back to the country's own language when the library has no
    translation for it.

    Entities whose weekend changed over time (the library overrides ``_get_weekend`` for e.g. SA,
    AE, KW) keep the library's historical weekend; for all others ``weekend`` applies.
    """

    def __init__(
        self,
        country: str = "RU",
        subdivision: str | None = None,
        weekend: Iterable[int] = (5, 6),
        days_off: Iterable[date] = (),
        working_days: Iterable[date] = (),
        language: str | None = None,
    ) -> None:
        self.country = country
        self.subdivision = subdivision or None
        self.weekend = _normalize_weekend(weekend)
        self.days_off = frozenset(days_off)
        self.working_days = frozenset(working_days)
        if both := self.days_off & self.working_days:
            dates = ", ".join(day.isoformat() for day in sorted(both))
            raise ValueError(f"Dates cannot be both days off and working days: {dates}")
        self.language = _holidays_language(country, language or _language_from_django())
        self._holidays = _country_holidays(country, self.subdivision, self.weekend, self.language)

    def __repr__(self) -> str:
        return (
            f"WorkingCalendar(country={self.country!r}, subdivision={self.subdivision!r}, "
            f"weekend={self.weekend!r}, language={self.language!r}, "
            f"days_off={len(self.days_off)}, working_days={len(self.working_days)})"
        )

    def is_working_day(self, day: date) -> bool:
        if day in self.working_days:
            return True
        if day in self.days_off:
            return False
        with _HOLIDAYS_LOCK:
            # Populate next year too: a working Saturday can be declared in the next year's data.
            self._holidays.get(date(day.year + 1, 1, 1))
            return self._holidays.is_working_day(day)

    def holiday_name(self, day: date) -> str:
        """The country's holiday name(s) for ``day`` (company days off are not holidays)."""
        with _HOLIDAYS_LOCK:
            return self._holidays.get(day, "")

    def add_working_days(self, day: date, n: int) -> date:
        """The ``n``-th working day after ``day``; for ``n == 0``, ``next_working_day(day)``.

        Same semantics as the library's ``get_nth_working_day`` for ``n >= 0``, with the
        company's overrides applied.
        """
        return self._advance(day, n)[0]

    def next_working_day(self, day: date) -> date:
        """``day`` itself if it is a working day, else the first working day after it."""
        return self._advance(day, 0)[0]

    def plan_send(
        self,
        after: datetime,
        working_days: int,
        window_start: time,
        window_end: time,
        tz: ZoneInfo,
    ) -> tuple[datetime, list[Shift]]:
        """When to send, ``working_days`` working days after the aware datetime ``after``.

        Days are counted on the local dates of ``tz``. The send keeps the local time of day of
        ``after``, then moves into the window ``[window_start, window_end)``: before the window
        it moves to ``window_start`` the same day, at/after ``window_end`` to ``window_start`` of
        the next working day. Returns an aware datetime in ``tz`` and the Shifts explaining the
        moves (see the module docstring for which ones are reported).

        Local times are built per day, so the wall-clock time survives daylight-saving changes;
        a time that does not exist on the target day (DST gap) moves forward by the gap, an
        ambiguous one means its first occurrence.
        """
        _check_window(window_start, window_end)
        local = _to_local(after, tz)
        day, skipped = self._advance(local.date(), working_days)
        shifts = self._explain(skipped, report_weekends=False)
        moment, window_shifts = self.fit_into_window(
            _local_datetime(day, local.time(), tz), window_start, window_end, tz
        )
        return moment, shifts + window_shifts

    def fit_into_window(
        self,
        moment: datetime,
        window_start: time,
        window_end: time,
        tz: ZoneInfo,
    ) -> tuple[datetime, list[Shift]]:
        """The earliest moment ``>= moment`` inside ``[window_start, window_end)`` (local time in
        ``tz``) on a working day, and the Shifts explaining the move (empty if none)."""
        _check_window(window_start, window_end)
        local = _to_local(moment, tz)
        day, clock = local.date(), local.time()
        shifts: list[Shift] = []
        if self.is_working_day(day):
            if window_start <= clock < window_end:
                return local, shifts
            shifts.append(Shift(Shift.WINDOW, day))
            if clock < window_start:
                return _local_datetime(day, window_start, tz), shifts
            day += ONE_DAY
        day, skipped = self._advance(day, 0)
        shifts += self._explain(skipped, report_weekends=True)
        return _local_datetime(day, window_start, tz), shifts

    def _advance(self, day: date, n: int) -> tuple[date, list[date]]:
        """The ``n``-th working day after ``day`` (``n == 0``: the next working day from
        ``day`` on) and the non-working days passed over on the way, in order."""
        if n < 0:
            raise ValueError(f"The number of working days must not be negative, got {n}")
        skipped = []
        for _ in range(n or 1):
            if n:
                day += ONE_DAY
            while not self.is_working_day(day):
                skipped.append(day)
                day += ONE_DAY
        return day, skipped

    def _explain(self, skipped: list[date], *, report_weekends: bool) -> list[Shift]:
        """One Shift per reason per run of consecutive skipped days, dated at its first day."""
        shifts = []
        seen: set[tuple[str, str]] = set()
        previous = None
        for day in skipped:
            if previous is None or day - previous != ONE_DAY:
                seen = set()  # a new run of non-working days
            previous = day
            if name := self.holiday_name(day):
                shift = Shift(Shift.HOLIDAY, day, name)
            elif day in self.days_off:
                shift = Shift(Shift.DAY_OFF, day)
            elif report_weekends:
                shift = Shift(Shift.WEEKEND, day)
            else:
                continue
            if (shift.kind, shift.name) not in seen:
                seen.add((shift.kind, shift.name))
                shifts.append(shift)
        return shifts


def get_calendar(
    days_off: Iterable[date] = (), working_days: Iterable[date] = ()
) -> WorkingCalendar:
    """The calendar configured in settings (country, subdivision, weekend) for Django's active
    language, with the given company overrides.

    One cached calendar per (country, subdivision, weekend, language, frozenset(days_off),
    frozenset(working_days)); clear it with ``get_calendar.cache_clear()``.
    """
    country = getattr(settings, "NURTURE_CALENDAR_COUNTRY", "RU")
    return _cached_calendar(
        country,
        getattr(settings, "NURTURE_CALENDAR_SUBDIVISION", None) or None,
        _normalize_weekend(getattr(settings, "NURTURE_WEEKEND_DAYS", (5, 6))),
        _holidays_language(country, _language_from_django()),
        frozenset(days_off),
        frozenset(working_days),
    )


@functools.lru_cache(maxsize=128)
def _cached_calendar(
    country: str,
    subdivision: str | None,
    weekend: tuple[int, ...],
    language: str | None,
    days_off: frozenset[date],
    working_days: frozenset[date],
) -> WorkingCalendar:
    return WorkingCalendar(country, subdivision, weekend, days_off, working_days, language)


get_calendar.cache_clear = _cached_calendar.cache_clear  # type: ignore[attr-defined]


@functools.cache
def _country_holidays(
    country: str, subdivision: str | None, weekend: tuple[int, ...], language: str | None
) -> holidays.HolidayBase:
    """One lazily expanding holidays object per country, subdivision, weekend and language."""
    country_holidays = holidays.country_holidays(country, subdiv=subdivision, language=language)
    # Set before any year is populated: the library also uses the weekend to decide which
    # transferred days become ``weekend_workdays``.
    country_holidays.weekend = set(weekend)
    return country_holidays


def _holidays_language(country: str, language: str | None) -> str | None:
    """``language`` if the library translates ``country``'s holidays into it, else the
    country's own language (never None when the country has one, so the library does not
    guess from the process locale)."""
    entity = getattr(holidays, country, None)
    if entity is None:
        return language  # let holidays.country_holidays() report the unknown country
    if language in entity.supported_languages:
        return language
    return entity.default_language


def _language_from_django() -> str:
    active = translation.get_language() or ""
    return "ru" if active.split("-")[0].lower() == "ru" else "en_US"


def _normalize_weekend(weekend: Iterable[int]) -> tuple[int, ...]:
    days = tuple(sorted({int(day) for day in weekend}))
    if any(not 0 <= day <= 6 for day in days) or len(days) == 7:
        raise ValueError(f"Weekend must be some (not all) of the weekdays 0-6, got {days}")
    return days


def _check_window(window_start: time, window_end: time) -> None:
    if window_start.tzinfo is not None or window_end.tzinfo is not None:
        raise ValueError("The sending window must be given as naive local times")
    if not window_start < window_end:
        raise ValueError(f"Empty sending window: {window_start} - {window_end}")


def _to_local(moment: datetime, tz: ZoneInfo) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"An aware datetime is required, got {moment!r}")
    return moment.astimezone(tz)


def _local_datetime(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """``day`` at wall-clock ``clock`` in ``tz``, normalised by a round trip through UTC: a
    nonexistent time (DST gap) moves forward by the gap, an ambiguous one is its first
    occurrence."""
    naive_clock = clock.replace(tzinfo=None, fold=0)
    return datetime.combine(day, naive_clock, tzinfo=tz).astimezone(UTC).astimezone(tz)
