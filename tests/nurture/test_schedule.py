"""The dispatcher's memoised planner and the one-off plan (the lead page, the preview) give the
same answers: they share one computation, and this says so over a whole year."""

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from nurture import schedule
from tests.conftest import MSK

ZONES = ["", "Asia/Yekaterinburg", "Europe/Berlin"]  # "": the company's


@pytest.mark.parametrize("zone", ZONES)
def test_the_planner_and_next_send_agree_on_every_day_of_a_year(default_sequence, zone):
    calendar = schedule.company_calendar()
    planner = schedule.Planner(calendar)
    lead = SimpleNamespace(time_zone=zone)
    start = datetime(2025, 1, 1, 9, 0, tzinfo=MSK)
    for day in range(366):
        for hours in (0, 5, 11):  # before, inside and after the sending window
            planned = start + timedelta(days=day, hours=hours)
            for now in (planned, planned + timedelta(hours=2)):  # on time, and late
                expected, _ = schedule.next_send(default_sequence, lead, planned, now, calendar)
                answer = planner.next_send(default_sequence, zone, planned, now)
                assert answer == expected, (planned, now, zone)


# --- When a send may go: the window, working days, the lead's time zone -----------------------

FRIDAY = datetime(2025, 11, 21, tzinfo=MSK)  # then the weekend; Monday 24 is a working day
SATURDAY = datetime(2025, 11, 22, tzinfo=MSK)
MONDAY = datetime(2025, 11, 24, tzinfo=MSK)


def moment(day: datetime, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute, second=second)


@pytest.fixture
def planner(db):
    return schedule.Planner()


@pytest.mark.parametrize(
    ("planned", "now"),
    [
        (moment(FRIDAY, 11), moment(FRIDAY, 11)),  # on time
        (moment(FRIDAY, 11), moment(FRIDAY, 16)),  # late, and the window is still open
        (moment(FRIDAY, 17, 59, 30), moment(FRIDAY, 18, 0)),  # the next tick after the window
        (moment(FRIDAY, 17, 59), moment(FRIDAY, 18, 1)),  # ON_TIME after it
        # Dispatched at 18:00:00 for 17:59:30 (the next tick), taken by a worker at once.
        (moment(FRIDAY, 18, 0), moment(FRIDAY, 18, 0, 5)),
    ],
)
def test_a_send_may_go_inside_the_window_or_a_tick_after_a_planned_moment_in_it(
    planner, default_sequence, planned, now
):
    assert planner.held_until(default_sequence, "", planned, now) is None


@pytest.mark.parametrize(
    ("planned", "now", "expected"),
    [
        # More than ON_TIME after the window closed: the next working morning (Monday).
        (moment(FRIDAY, 17, 50), moment(FRIDAY, 18, 3), moment(MONDAY, 10)),
        # Late into the night, and at the weekend.
        (moment(FRIDAY, 15), moment(FRIDAY, 23, 30), moment(MONDAY, 10)),
        (moment(FRIDAY, 15), moment(SATURDAY, 12), moment(MONDAY, 10)),
        # Early on a working day: that morning.
        (moment(FRIDAY, 15), moment(MONDAY, 7), moment(MONDAY, 10)),
        # Planned outside the window (by hand, say) and due at once: still the window.
        (moment(FRIDAY, 9), moment(FRIDAY, 9, 0, 30), moment(FRIDAY, 10)),
        # Set to go again at once at night or at the weekend (a task given back): the window.
        (moment(FRIDAY, 23), moment(FRIDAY, 23, 0, 5), moment(MONDAY, 10)),
        (moment(SATURDAY, 11), moment(SATURDAY, 11, 0, 5), moment(MONDAY, 10)),
    ],
)
def test_a_send_outside_the_window_is_held_until_it_opens(
    planner, default_sequence, planned, now, expected
):
    assert planner.held_until(default_sequence, "", planned, now) == expected


def test_the_window_is_the_one_of_the_leads_time_zone(planner, default_sequence):
    # 08:30 in Moscow is 10:30 in Yekaterinburg and 07:30 in Kaliningrad.
    now, planned = moment(MONDAY, 8, 30), moment(FRIDAY, 12)
    assert planner.held_until(default_sequence, "Asia/Yekaterinburg", planned, now) is None
    assert planner.held_until(default_sequence, "Europe/Kaliningrad", planned, now) == moment(
        MONDAY, 11
    )


def test_the_planner_reads_the_company_calendar_once_for_a_whole_batch(
    default_sequence, django_assert_num_queries
):
    planner = schedule.Planner()
    with django_assert_num_queries(1):
        for hour in range(24):
            planner.held_until(default_sequence, "", moment(FRIDAY, 11), moment(FRIDAY, hour))
