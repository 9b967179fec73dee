import csv
import io
from datetime import date

import pytest

from telephony.calls.reports import as_csv, call_report, columns, total
from tests.telephony.conftest import call_event

MONDAY, TUESDAY, WEDNESDAY = date(2025, 11, 24), date(2025, 11, 25), date(2025, 11, 26)
HOUR = 3600  # seconds after T0, which is Monday 12:00 in Moscow (09:00 UTC)


@pytest.fixture
def two_days_of_calls(alice, bob, apply):
    """Alice (extension 201) and Bob (202) on the phone on Monday and Tuesday, Moscow time."""

    def call(call_id, *events, **fields):
        apply(*(call_event(type, call_id=call_id, seconds=at, **fields) for type, at in events))

    out = {"direction": "out", "from_number": "201", "to_number": "+79161234567"}
    # Alice, Monday: answered (60 s of talk), missed, still ringing (02:59 Moscow, Sunday
    # in UTC), and an outbound call with 120 s of talk.
    call("a-answered", ("call.ringing", 0), ("call.answered", 5), ("call.ended", 65))
    call("a-missed", ("call.ringing", HOUR), ("call.ended", HOUR + 20))
    call("a-ringing", ("call.ringing", -9 * HOUR - 60))
    call("a-out", ("call.answered", 2 * HOUR), ("call.ended", 2 * HOUR + 120), **out)
    # Alice, Tuesday 00:00 Moscow (Monday 21:00 UTC): answered, 30 s of talk.
    call(
        "a-midnight",
        ("call.ringing", 12 * HOUR),
        ("call.answered", 12 * HOUR + 10),
        ("call.ended", 12 * HOUR + 40),
    )
    # Bob, Monday: answered, 90 s; Tuesday: an outbound call nobody picked up.
    bobs = {"extension": "202"}
    call(
        "b-answered",
        ("call.ringing", 3 * HOUR),
        ("call.answered", 3 * HOUR + 10),
        ("call.ended", 3 * HOUR + 100),
        **bobs,
    )
    call("b-out", ("call.ringing", 22 * HOUR), ("call.ended", 22 * HOUR + 30), **out, **bobs)
    # Nobody's: a missed call that rang no extension; an internal call; Wednesday's call.
    call("nobody", ("call.ringing", 4 * HOUR), ("call.ended", 4 * HOUR + 20), extension="")
    call("internal", ("call.answered", 5 * HOUR), ("call.ended", 6 * HOUR), direction="internal")
    call("wednesday", ("call.ringing", 48 * HOUR), ("call.ended", 48 * HOUR + 5))


def numbers(rows):
    return [
        (
            row.day,
            row.manager_name,
            row.inbound,
            row.outbound,
            row.missed,
            row.answered,
            row.answered_rate,
            row.talk_average,
            row.talk_total,
        )
        for row in rows
    ]


ALICE_MONDAY = (MONDAY, "Alice Manager", 3, 1, 1, 1, 33.3, 90, 180)
BOB_MONDAY = (MONDAY, "Bob Manager", 1, 0, 0, 1, 100.0, 90, 90)
NOBODY_MONDAY = (MONDAY, "no manager", 1, 0, 1, 0, 0.0, None, 0)
ALICE_TUESDAY = (TUESDAY, "Alice Manager", 1, 0, 0, 1, 100.0, 30, 30)
BOB_TUESDAY = (TUESDAY, "Bob Manager", 0, 1, 0, 0, None, None, 0)


def test_the_report_counts_calls_per_manager_and_company_day(two_days_of_calls, olga):
    rows = call_report(olga, MONDAY, TUESDAY)

    assert numbers(rows) == [ALICE_MONDAY, BOB_MONDAY, NOBODY_MONDAY, ALICE_TUESDAY, BOB_TUESDAY]
    assert numbers([total(rows)]) == [(None, "no manager", 6, 2, 2, 3, 50.0, 75, 300)]


def test_days_are_the_companys_not_utc(two_days_of_calls, olga, settings):
    assert numbers(call_report(olga, TUESDAY, TUESDAY)) == [ALICE_TUESDAY, BOB_TUESDAY]

    settings.TIME_ZONE = "UTC"
    alice_monday_in_utc = call_report(olga, MONDAY, MONDAY)[0]
    # In UTC the 02:59 call was on Sunday and the midnight call on Monday.
    assert (alice_monday_in_utc.inbound, alice_monday_in_utc.talk_total) == (3, 210)


def test_a_manager_sees_only_their_own_numbers(two_days_of_calls, alice, bob):
    assert numbers(call_report(alice, MONDAY, TUESDAY)) == [ALICE_MONDAY, ALICE_TUESDAY]
    assert numbers(call_report(alice, MONDAY, TUESDAY, manager=bob)) == []


def test_a_supervisor_can_look_at_one_manager(two_days_of_calls, olga, bob):
    assert numbers(call_report(olga, MONDAY, WEDNESDAY, manager=bob)) == [BOB_MONDAY, BOB_TUESDAY]


def test_a_day_without_calls_has_no_rows(two_days_of_calls, olga):
    assert call_report(olga, date(2025, 11, 20), date(2025, 11, 23)) == []


def test_the_csv_has_a_header_and_one_plain_row_per_manager_and_day(two_days_of_calls, olga):
    text = as_csv(call_report(olga, MONDAY, TUESDAY))

    header, *rows = csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=";")
    assert header == columns()
    assert header[:3] == ["Day", "Manager", "Inbound"]
    assert rows == [
        ["2025-11-24", "Alice Manager", "3", "1", "1", "1", "33", "90", "180"],
        ["2025-11-24", "Bob Manager", "1", "0", "0", "1", "100", "90", "90"],
        ["2025-11-24", "no manager", "1", "0", "1", "0", "0", "", "0"],
        ["2025-11-25", "Alice Manager", "1", "0", "0", "1", "100", "30", "30"],
        ["2025-11-25", "Bob Manager", "0", "1", "0", "0", "", "", "0"],
    ]
