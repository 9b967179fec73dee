"""The working-day calendar, checked against the real calendars of the installed holidays library.

Expected Russian dates are the official production calendars (2024-2026): e.g. 2025 has Jan 1-8,
May 1-4, May 8-11, Jun 12-15 and Nov 2-4 off, Dec 31 off, and Saturday Nov 1 a working day;
2026 has Jan 1-11, Mar 9, May 1-3, May 9-11 off and Dec 31 off.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from django.utils import translation

from nurture.calendar import Shift, WorkingCalendar, get_calendar

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
WINDOW_START = time(10)
WINDOW_END = time(18)


@pytest.fixture(autouse=True)
def _fresh_calendar_cache():
    get_calendar.cache_clear()
    yield
    get_calendar.cache_clear()


@pytest.fixture
def russia():
    return WorkingCalendar("RU", language="en_US")


@pytest.fixture
def usa():
    return WorkingCalendar("US", language="en_US")


def moscow(*args):
    return datetime(*args, tzinfo=MOSCOW)


def days(start, stop):
    """Every date from ``start`` up to, not including, ``stop``."""
    return [start + timedelta(n) for n in range((stop - start).days)]


def moments(start, stop, step):
    while start < stop:
        yield start
        start += step


# --- working days -------------------------------------------------------------------------------


def test_plain_weekdays_are_working_days_and_weekends_are_not(russia):
    assert russia.is_working_day(date(2025, 3, 12))  # Wednesday
    assert not russia.is_working_day(date(2025, 3, 15))  # Saturday
    assert not russia.is_working_day(date(2025, 3, 16))  # Sunday


@pytest.mark.parametrize("saturday", [date(2024, 12, 28), date(2025, 11, 1)])
def test_a_transferred_working_saturday_counts_as_a_working_day(russia, saturday):
    assert saturday.weekday() == 5
    assert russia.is_working_day(saturday)


@pytest.mark.parametrize(
    "day",
    [
        *days(date(2025, 1, 1), date(2025, 1, 9)),
        date(2025, 5, 2),  # transferred from Jan 4
        date(2025, 5, 8),  # transferred from Feb 23
        date(2025, 6, 13),  # transferred from Mar 8
        date(2025, 11, 3),  # transferred from the working Saturday Nov 1
        date(2025, 11, 4),
        date(2025, 12, 31),  # transferred from Jan 5
        date(2026, 1, 9),  # transferred from Jan 3
        date(2026, 3, 9),  # Mar 8 falls on a Sunday
        date(2026, 5, 11),  # May 9 falls on a Saturday
    ],
)
def test_russian_holidays_and_transferred_days_off_are_not_working_days(russia, day):
    assert not russia.is_working_day(day)


def test_the_first_working_days_of_the_year_are_after_the_new_year_holidays(russia):
    assert russia.is_working_day(date(2025, 1, 9))
    assert russia.is_working_day(date(2026, 1, 12))


def test_holiday_name_is_given_in_the_requested_language():
    assert WorkingCalendar("RU", language="en_US").holiday_name(date(2025, 1, 1)) == (
        "New Year Holidays"
    )
    assert WorkingCalendar("RU", language="ru").holiday_name(date(2025, 1, 1)) == (
        "Новогодние каникулы"
    )


def test_holiday_name_is_empty_on_ordinary_days_and_company_days_off():
    calendar = WorkingCalendar("RU", days_off=[date(2025, 3, 12)], language="en_US")

    assert calendar.holiday_name(date(2025, 3, 11)) == ""
    assert calendar.holiday_name(date(2025, 3, 12)) == ""


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (date(2024, 12, 27), date(2025, 1, 10)),  # Sat Dec 28 2024 is a working day
        (date(2024, 12, 28), date(2025, 1, 13)),
        (date(2025, 12, 29), date(2026, 1, 13)),  # Dec 31 and Jan 1-11 are off
        (date(2025, 12, 30), date(2026, 1, 14)),
        (date(2025, 12, 31), date(2026, 1, 14)),
        (date(2026, 12, 29), date(2027, 1, 12)),
    ],
)
def test_three_working_days_after_the_year_end_cross_the_new_year_holidays(russia, start, expected):
    assert russia.add_working_days(start, 3) == expected


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (date(2025, 4, 30), date(2025, 5, 7)),  # May 1-4 off
        (date(2025, 5, 6), date(2025, 5, 13)),  # May 8-11 off
        (date(2026, 4, 30), date(2026, 5, 6)),  # May 1-3 off
        (date(2026, 5, 7), date(2026, 5, 13)),  # May 9-11 off
        (date(2025, 10, 31), date(2025, 11, 6)),  # Sat Nov 1 works, Nov 2-4 off
    ],
)
def test_three_working_days_cross_the_may_and_november_holidays(russia, start, expected):
    assert russia.add_working_days(start, 3) == expected


def test_zero_working_days_is_the_day_itself_or_the_next_working_day(russia):
    assert russia.add_working_days(date(2025, 3, 12), 0) == date(2025, 3, 12)
    assert russia.add_working_days(date(2025, 1, 1), 0) == date(2025, 1, 9)
    assert russia.next_working_day(date(2025, 3, 15)) == date(2025, 3, 17)
    assert russia.next_working_day(date(2025, 11, 1)) == date(2025, 11, 1)


def test_a_negative_number_of_working_days_is_refused(russia):
    with pytest.raises(ValueError, match="negative"):
        russia.add_working_days(date(2025, 3, 12), -1)


@pytest.mark.parametrize("country", ["RU", "US", "DE"])
def test_counting_agrees_with_the_library_over_two_whole_years(country):
    calendar = WorkingCalendar(country, language="en_US")
    library = holidays.country_holidays(country)

    for day in days(date(2025, 1, 1), date(2027, 1, 1)):
        for n in (0, 1, 3):
            assert calendar.add_working_days(day, n) == library.get_nth_working_day(day, n)


def test_another_country_uses_its_own_holidays(usa):
    assert not usa.is_working_day(date(2025, 7, 4))  # Independence Day, a Friday
    assert not usa.is_working_day(date(2026, 7, 3))  # observed: July 4 2026 is a Saturday
    assert usa.is_working_day(date(2025, 1, 7))  # Orthodox Christmas is Russian only
    assert usa.add_working_days(date(2025, 7, 3), 1) == date(2025, 7, 7)
    assert usa.holiday_name(date(2025, 11, 27)) == "Thanksgiving Day"


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2025, 1, 6), "Epiphany"),
        (date(2025, 6, 19), "Corpus Christi"),
        (date(2025, 11, 1), "All Saints' Day"),  # a Saturday anyway
    ],
)
def test_bavaria_has_catholic_holidays_that_berlin_does_not(day, name):
    bavaria = WorkingCalendar("DE", "BY", language="en_US")
    berlin = WorkingCalendar("DE", "BE", language="en_US")

    assert bavaria.holiday_name(day) == name
    assert berlin.holiday_name(day) == ""
    if day.weekday() < 5:
        assert not bavaria.is_working_day(day)
        assert berlin.is_working_day(day)


def test_berlin_has_womens_day_that_bavaria_does_not():
    friday = date(2024, 3, 8)

    assert not WorkingCalendar("DE", "BE", language="en_US").is_working_day(friday)
    assert WorkingCalendar("DE", "BY", language="en_US").is_working_day(friday)


def test_a_custom_friday_and_saturday_weekend_makes_sunday_a_working_day():
    calendar = WorkingCalendar("US", weekend=(4, 5), language="en_US")

    assert not calendar.is_working_day(date(2025, 3, 14))  # Friday
    assert not calendar.is_working_day(date(2025, 3, 15))  # Saturday
    assert calendar.is_working_day(date(2025, 3, 16))  # Sunday
    assert calendar.add_working_days(date(2025, 3, 13), 1) == date(2025, 3, 16)
    assert not calendar.is_working_day(date(2025, 7, 4))  # holidays still count


def test_a_custom_weekend_does_not_leak_into_the_default_calendar_of_the_same_country():
    WorkingCalendar("US", weekend=(4, 5), language="en_US").is_working_day(date(2025, 3, 16))

    default = WorkingCalendar("US", language="en_US")

    assert not default.is_working_day(date(2025, 3, 16))  # Sunday
    assert default.is_working_day(date(2025, 3, 14))  # Friday


def test_a_weekend_of_every_day_is_refused():
    with pytest.raises(ValueError, match="Weekend"):
        WorkingCalendar("RU", weekend=range(7), language="en_US")


def test_company_days_off_and_extra_working_days_override_the_country_calendar():
    calendar = WorkingCalendar(
        "RU",
        days_off=[date(2025, 3, 12)],
        working_days=[date(2025, 1, 6), date(2025, 3, 15)],
        language="en_US",
    )

    assert not calendar.is_working_day(date(2025, 3, 12))  # company day off, a Wednesday
    assert calendar.is_working_day(date(2025, 1, 6))  # works on a public holiday
    assert calendar.is_working_day(date(2025, 3, 15))  # works on a Saturday
    assert calendar.add_working_days(date(2025, 3, 11), 1) == date(2025, 3, 13)
    assert calendar.add_working_days(date(2025, 1, 3), 1) == date(2025, 1, 6)
    assert calendar.holiday_name(date(2025, 1, 6)) == "New Year Holidays"


def test_a_date_cannot_be_both_a_company_day_off_and_a_working_day():
    with pytest.raises(ValueError, match="2025-03-12"):
        WorkingCalendar("RU", days_off=[date(2025, 3, 12)], working_days=[date(2025, 3, 12)])


def test_calendars_of_one_country_share_one_holidays_object():
    plain = WorkingCalendar("RU", language="en_US")
    with_days_off = WorkingCalendar("RU", days_off=[date(2025, 3, 12)], language="en_US")

    assert plain._holidays is with_days_off._holidays


# --- shifts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shift", "text"),
    [
        (
            Shift("holiday", date(2027, 1, 1), "New Year Holidays"),
            "shifted past New Year Holidays (2027-01-01)",
        ),
        (Shift("weekend", date(2025, 3, 15)), "shifted past the weekend (2025-03-15)"),
        (Shift("day_off", date(2025, 3, 12)), "shifted past a company day off (2025-03-12)"),
        (Shift("window", date(2025, 3, 12)), "moved into the sending window"),
    ],
)
def test_a_shift_reads_as_a_sentence(shift, text):
    with translation.override("en"):
        assert str(shift) == text


# --- plan_send ----------------------------------------------------------------------------------


def plan(calendar, after, working_days=3, tz=MOSCOW):
    return calendar.plan_send(after, working_days, WINDOW_START, WINDOW_END, tz)


def test_plan_send_keeps_the_time_of_day(russia):
    assert plan(russia, moscow(2025, 3, 11, 14, 25)) == (moscow(2025, 3, 14, 14, 25), [])


def test_plan_send_moves_an_early_time_to_the_window_start(russia):
    sent, shifts = plan(russia, moscow(2025, 3, 11, 7, 40))

    assert sent == moscow(2025, 3, 14, 10)
    assert shifts == [Shift("window", date(2025, 3, 14))]


def test_plan_send_moves_a_time_at_the_window_end_to_the_next_working_morning(russia):
    sent, shifts = plan(russia, moscow(2025, 3, 11, 18))

    assert sent == moscow(2025, 3, 17, 10)
    assert shifts == [Shift("window", date(2025, 3, 14)), Shift("weekend", date(2025, 3, 15))]


def test_plan_send_explains_the_new_year_holidays_once_per_holiday_name(russia):
    sent, shifts = plan(russia, moscow(2025, 12, 29, 12))

    assert sent == moscow(2026, 1, 13, 12)
    assert shifts == [
        Shift("holiday", date(2025, 12, 31), "Day off (substituted from 01/05/2025)"),
        Shift("holiday", date(2026, 1, 1), "New Year Holidays"),
        Shift("holiday", date(2026, 1, 7), "Christmas Day"),
        Shift("holiday", date(2026, 1, 9), "Day off (substituted from 01/03/2026)"),
    ]


def test_plan_send_names_holidays_in_russian_for_a_russian_calendar():
    _, shifts = plan(WorkingCalendar("RU", language="ru"), moscow(2024, 12, 27, 12))

    assert shifts == [
        Shift("holiday", date(2024, 12, 30), "Выходной (перенесено с 28.12.2024)"),
        Shift("holiday", date(2024, 12, 31), "Выходной (перенесено с 07.01.2024)"),
        Shift("holiday", date(2025, 1, 1), "Новогодние каникулы"),
        Shift("holiday", date(2025, 1, 7), "Рождество Христово"),
    ]


def test_plan_send_explains_holidays_and_the_weekend_passed_after_leaving_the_window(russia):
    sent, shifts = plan(russia, moscow(2025, 4, 28, 19), working_days=2)

    assert sent == moscow(2025, 5, 5, 10)
    assert shifts == [
        Shift("window", date(2025, 4, 30)),
        Shift("holiday", date(2025, 5, 1), "Holiday of Spring and Labor"),
        Shift("holiday", date(2025, 5, 2), "Day off (substituted from 01/04/2025)"),
        Shift("weekend", date(2025, 5, 3)),
    ]


def test_plan_send_reports_a_run_of_company_days_off_once():
    calendar = WorkingCalendar("RU", days_off=days(date(2025, 3, 12), date(2025, 3, 15)))

    sent, shifts = plan(calendar, moscow(2025, 3, 11, 12), working_days=1)

    assert sent == moscow(2025, 3, 17, 12)
    assert shifts == [Shift("day_off", date(2025, 3, 12))]


def test_plan_send_reports_separate_company_days_off_separately():
    calendar = WorkingCalendar("RU", days_off=[date(2025, 3, 12), date(2025, 3, 14)])

    sent, shifts = plan(calendar, moscow(2025, 3, 11, 12))

    assert sent == moscow(2025, 3, 18, 12)
    assert shifts == [Shift("day_off", date(2025, 3, 12)), Shift("day_off", date(2025, 3, 14))]


def test_plan_send_counts_days_in_the_time_zone_of_the_lead(russia):
    # 19:30 on Thursday in Moscow is 17:30 Thursday in Berlin but 02:30 Friday in Vladivostok.
    vladivostok = ZoneInfo("Asia/Vladivostok")
    after = moscow(2025, 3, 13, 19, 30)

    in_berlin, _ = plan(russia, after, working_days=1, tz=BERLIN)
    in_vladivostok, _ = plan(russia, after, working_days=1, tz=vladivostok)

    assert in_berlin == datetime(2025, 3, 14, 17, 30, tzinfo=BERLIN)
    assert in_vladivostok == datetime(2025, 3, 17, 10, tzinfo=vladivostok)


def test_plan_send_never_lands_outside_the_window_or_on_a_day_off_all_year(russia):
    for after in moments(moscow(2025, 1, 1), moscow(2026, 1, 1), timedelta(hours=5, minutes=17)):
        sent, shifts = plan(russia, after)
        counted = russia.add_working_days(after.date(), 3)

        assert sent.tzinfo is MOSCOW
        assert russia.is_working_day(sent.date())
        assert WINDOW_START <= sent.time() < WINDOW_END
        assert sent.date() >= counted
        in_window = WINDOW_START <= after.time() < WINDOW_END
        assert (Shift("window", counted) in shifts) is not in_window
        if in_window:
            assert (sent.date(), sent.time()) == (counted, after.time())
        for shift in shifts:
            if shift.kind == "holiday":
                assert after.date() < shift.day < sent.date()
                assert not russia.is_working_day(shift.day)


# --- daylight saving ----------------------------------------------------------------------------


def test_the_wall_clock_time_survives_the_spring_change_in_berlin(russia):
    after = datetime(2025, 3, 27, 15, tzinfo=BERLIN)  # CET, +01:00

    sent, _ = plan(russia, after, tz=BERLIN)

    assert sent == datetime(2025, 4, 1, 15, tzinfo=BERLIN)
    assert sent.utcoffset() == timedelta(hours=2)
    assert sent.astimezone(UTC) == datetime(2025, 4, 1, 13, tzinfo=UTC)


def test_the_wall_clock_time_survives_the_autumn_change_in_berlin(russia):
    sent, _ = plan(russia, datetime(2025, 10, 23, 15, tzinfo=BERLIN), tz=BERLIN)

    assert sent.astimezone(UTC) == datetime(2025, 10, 28, 14, tzinfo=UTC)


def test_an_early_send_moves_to_the_window_start_across_the_new_york_changes(usa):
    spring, _ = plan(usa, datetime(2025, 3, 6, 9, tzinfo=NEW_YORK), tz=NEW_YORK)
    autumn, _ = plan(usa, datetime(2025, 10, 30, 17, 30, tzinfo=NEW_YORK), tz=NEW_YORK)

    assert spring.astimezone(UTC) == datetime(2025, 3, 11, 14, tzinfo=UTC)  # 10:00 EDT
    assert autumn.astimezone(UTC) == datetime(2025, 11, 4, 22, 30, tzinfo=UTC)  # 17:30 EST


@pytest.mark.parametrize(
    ("country", "tz", "periods"),
    [
        (
            "RU",
            BERLIN,
            [(date(2025, 3, 20), date(2025, 4, 5)), (date(2025, 10, 18), date(2025, 11, 5))],
        ),
        (
            "US",
            NEW_YORK,
            [(date(2025, 3, 1), date(2025, 3, 15)), (date(2025, 10, 25), date(2025, 11, 8))],
        ),
    ],
)
def test_sends_land_inside_the_local_window_on_both_sides_of_a_dst_change(country, tz, periods):
    calendar = WorkingCalendar(country, language="en_US")
    for first, last in periods:
        start = datetime.combine(first, time(), tzinfo=UTC)
        stop = datetime.combine(last, time(), tzinfo=UTC)
        for after in moments(start, stop, timedelta(minutes=50)):
            sent, _ = plan(calendar, after, tz=tz)
            local_after = after.astimezone(tz)

            assert sent > after
            assert calendar.is_working_day(sent.date())
            assert WINDOW_START <= sent.time() < WINDOW_END
            if WINDOW_START <= local_after.time() < WINDOW_END:
                assert sent.time() == local_after.time()


def test_a_time_missing_on_the_spring_change_day_moves_forward_by_the_gap():
    sunday = date(2025, 3, 30)  # Berlin skips 02:00-03:00
    calendar = WorkingCalendar("DE", working_days=[sunday], language="en_US")
    saturday_night = datetime(2025, 3, 29, 2, 30, tzinfo=BERLIN)

    sent, shifts = calendar.plan_send(saturday_night, 1, time(0), time(23), BERLIN)

    assert sent.astimezone(UTC) == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assert (sent.date(), sent.time()) == (sunday, time(3, 30))
    assert shifts == []


# --- fit_into_window ----------------------------------------------------------------------------


def fit(calendar, moment, tz=MOSCOW):
    return calendar.fit_into_window(moment, WINDOW_START, WINDOW_END, tz)


def test_a_moment_inside_the_window_on_a_working_day_stays_as_it_is(russia):
    assert fit(russia, moscow(2025, 3, 12, 12, 34, 56)) == (moscow(2025, 3, 12, 12, 34, 56), [])


def test_a_moment_on_a_saturday_moves_to_monday_morning(russia):
    moved, shifts = fit(russia, moscow(2025, 3, 15, 12))

    assert moved == moscow(2025, 3, 17, 10)
    assert shifts == [Shift("weekend", date(2025, 3, 15))]


def test_a_moment_on_new_years_day_moves_past_the_whole_holiday_break(russia):
    moved, shifts = fit(russia, moscow(2025, 1, 1, 12))

    assert moved == moscow(2025, 1, 9, 10)
    assert shifts == [
        Shift("holiday", date(2025, 1, 1), "New Year Holidays"),
        Shift("holiday", date(2025, 1, 7), "Christmas Day"),
    ]


def test_fit_into_window_returns_the_time_in_the_leads_time_zone(russia):
    moved, shifts = fit(russia, datetime(2025, 3, 12, 8, tzinfo=UTC), tz=BERLIN)  # 09:00 CET

    assert moved.tzinfo is BERLIN
    assert (moved.date(), moved.time()) == (date(2025, 3, 12), time(10))
    assert shifts == [Shift("window", date(2025, 3, 12))]


def test_fit_into_window_finds_the_earliest_moment_all_year(russia):
    for moment in moments(moscow(2025, 1, 1), moscow(2026, 1, 1), timedelta(hours=3, minutes=7)):
        moved, _ = fit(russia, moment)

        assert moved >= moment
        assert russia.is_working_day(moved.date())
        assert WINDOW_START <= moved.time() < WINDOW_END
        if moved != moment:
            assert moved.time() == WINDOW_START
            passed = days(moment.date() + timedelta(1), moved.date())
            assert not any(russia.is_working_day(day) for day in passed)
            if moved.date() == moment.date():
                assert moment.time() < WINDOW_START


def test_a_naive_datetime_or_an_empty_window_is_refused(russia):
    with pytest.raises(ValueError, match="aware"):
        russia.fit_into_window(datetime(2025, 3, 12, 12), WINDOW_START, WINDOW_END, MOSCOW)
    with pytest.raises(ValueError, match="window"):
        russia.plan_send(moscow(2025, 3, 12, 12), 3, WINDOW_END, WINDOW_START, MOSCOW)


# --- language and get_calendar ------------------------------------------------------------------


def test_holiday_names_follow_the_active_django_language():
    with translation.override("ru"):
        assert WorkingCalendar("RU").holiday_name(date(2025, 1, 7)) == "Рождество Христово"
    with translation.override("en"):
        assert WorkingCalendar("RU").holiday_name(date(2025, 1, 7)) == "Christmas Day"


def test_a_country_without_the_language_falls_back_to_its_own_language():
    with translation.override("ru"):
        germany = WorkingCalendar("DE")
        usa = WorkingCalendar("US")

    assert germany.language == "de"
    assert germany.holiday_name(date(2025, 12, 25)) == "Erster Weihnachtstag"
    assert usa.language == "en_US"


def test_get_calendar_returns_the_same_cached_calendar_for_the_same_arguments():
    day_off = date(2025, 3, 12)

    assert get_calendar() is get_calendar()
    assert get_calendar(days_off=[day_off]) is get_calendar(days_off=(day_off, day_off))
    assert get_calendar(days_off=[day_off]) is not get_calendar()
    assert get_calendar(working_days=[day_off]) is not get_calendar(days_off=[day_off])


def test_get_calendar_reads_country_subdivision_and_weekend_from_settings(settings):
    settings.NURTURE_CALENDAR_COUNTRY = "DE"
    settings.NURTURE_CALENDAR_SUBDIVISION = "BY"
    settings.NURTURE_WEEKEND_DAYS = [4, 5]

    calendar = get_calendar()

    assert (calendar.country, calendar.subdivision, calendar.weekend) == ("DE", "BY", (4, 5))
    assert not calendar.is_working_day(date(2025, 1, 6))  # Epiphany in Bavaria
    assert calendar.is_working_day(date(2025, 3, 16))  # Sunday


def test_get_calendar_uses_the_russian_calendar_by_default(settings):
    settings.NURTURE_CALENDAR_COUNTRY = "RU"
    settings.NURTURE_CALENDAR_SUBDIVISION = None

    calendar = get_calendar()

    assert calendar.country == "RU"
    assert calendar.is_working_day(date(2025, 11, 1))


def test_get_calendar_keeps_one_calendar_per_language():
    with translation.override("ru"):
        russian = get_calendar()
    with translation.override("en"):
        english = get_calendar()

    assert russian is not english
    assert russian.holiday_name(date(2025, 6, 12)) == "День России"
    assert english.holiday_name(date(2025, 6, 12)) == "Russia Day"
