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
