"""What an enrollment will send and when, against the real Russian production calendar.

Enrolled on Thursday 2025-12-25 at 14:00 Moscow time, three working days apart:
1. Fri 26, Mon 29, Tue 30 Dec (the weekend does not count)           -> Tue 2025-12-30 14:00
2. Dec 31 and Jan 1-11 are days off; Mon 12, Tue 13, Wed 14 Jan      -> Wed 2026-01-14 14:00
3. Thu 15, Fri 16, Mon 19                                            -> Mon 2026-01-19 14:00
4. Tue 20, Wed 21, Thu 22                                            -> Thu 2026-01-22 14:00
5. Fri 23, Mon 26, Tue 27                                            -> Tue 2026-01-27 14:00
6. Wed 28, Thu 29, Fri 30                                            -> Fri 2026-01-30 14:00
"""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from nurture import selectors, services
from nurture.dispatch import dispatch_due
from nurture.models import CalendarDay, Enrollment, OutboundMessage

MSK = ZoneInfo("Europe/Moscow")
YEKATERINBURG = ZoneInfo("Asia/Yekaterinburg")

EXPECTED = [
    datetime(2025, 12, 30, 14, 0, tzinfo=MSK),
    datetime(2026, 1, 14, 14, 0, tzinfo=MSK),
    datetime(2026, 1, 19, 14, 0, tzinfo=MSK),
    datetime(2026, 1, 22, 14, 0, tzinfo=MSK),
    datetime(2026, 1, 27, 14, 0, tzinfo=MSK),
    datetime(2026, 1, 30, 14, 0, tzinfo=MSK),
]
NEW_YEAR = "shifted past New Year Holidays (2026-01-01)"


@pytest.fixture
def clock_start():
    """Christmas Day 2025, 14:00 in Moscow: a working day in Russia, the sending window open."""
    return datetime(2025, 12, 25, 14, 0, tzinfo=MSK)


def enrollment_of(lead):
    return Enrollment.objects.select_related("lead", "sequence").get(
        lead=lead, state=Enrollment.State.ACTIVE
    )


def test_all_six_sends_are_planned_past_the_russian_new_year_holidays(
    clock, nurtured_lead, django_assert_num_queries
):
    enrollment = enrollment_of(nurtured_lead)

    with django_assert_num_queries(2):  # the messages and the company calendar
        sends = selectors.planned_sends(enrollment)

    assert [send.at for send in sends] == EXPECTED
    assert [send.number for send in sends] == [1, 2, 3, 4, 5, 6]
    assert {send.state for send in sends} == {"planned"}
    assert sends[0].reasons == []
    assert NEW_YEAR in sends[1].reasons
    assert "shifted past Christmas Day (2026-01-07)" in sends[1].reasons
    assert [send.reasons for send in sends[2:]] == [[], [], [], []]


def test_a_dispatched_message_shows_as_it_stands_and_the_rest_are_planned_from_it(
    clock, nurtured_lead, django_capture_on_commit_callbacks
):
    clock.move_to(EXPECTED[0])
    with django_capture_on_commit_callbacks(execute=False):
        [message_id] = dispatch_due()

    sends = selectors.planned_sends(enrollment_of(nurtured_lead))

    assert [send.at for send in sends] == EXPECTED
    assert [send.state for send in sends] == ["queued"] + ["planned"] * 5
    assert sends[0].reasons == []
    assert NEW_YEAR in sends[1].reasons  # explained again from the first dispatch

    OutboundMessage.objects.filter(pk=message_id).update(
        state=OutboundMessage.State.SENT, sent_at=datetime(2025, 12, 30, 14, 2, tzinfo=MSK)
    )
    sent = selectors.planned_sends(enrollment_of(nurtured_lead))[0]
    assert (sent.state, sent.at) == ("sent", datetime(2025, 12, 30, 14, 2, tzinfo=MSK))


def test_a_halted_enrollment_lists_only_what_was_dispatched(
    clock, nurtured_lead, django_capture_on_commit_callbacks
):
    clock.move_to(EXPECTED[0])
    with django_capture_on_commit_callbacks(execute=False):
        dispatch_due()
    services.halt(Enrollment.objects.filter(lead=nurtured_lead), Enrollment.HaltReason.MANUAL)

    enrollment = Enrollment.objects.get(lead=nurtured_lead)
    sends = selectors.planned_sends(enrollment)

    assert [(send.number, send.at, send.state) for send in sends] == [(1, EXPECTED[0], "cancelled")]


def test_a_company_day_off_moves_a_send_and_says_so(clock, nurtured_lead):
    CalendarDay.objects.create(date=date(2026, 1, 19), kind=CalendarDay.Kind.DAY_OFF)

    sends = selectors.planned_sends(enrollment_of(nurtured_lead))

    assert sends[2].at == datetime(2026, 1, 20, 14, 0, tzinfo=MSK)
    assert sends[2].reasons == ["shifted past a company day off (2026-01-19)"]


def test_a_send_after_the_window_in_the_leads_time_zone_moves_to_the_next_working_morning(
    clock, make_lead, alice, default_sequence
):
    lead = make_lead(alice, time_zone="Asia/Yekaterinburg")
    clock.move_to(datetime(2025, 12, 25, 17, 30, tzinfo=MSK))  # 19:30 for the lead

    sends = selectors.sends_if_enrolled(default_sequence, lead)

    # Tue 30 Dec 19:30 is after the lead's window; Dec 31 to Jan 11 are days off.
    assert sends[0].at == datetime(2026, 1, 12, 10, 0, tzinfo=YEKATERINBURG)
    assert sends[0].reasons[0] == "moved into the sending window"
    assert NEW_YEAR in sends[0].reasons


def test_if_enrolled_now_the_lead_would_get_the_same_six_dates(
    clock, make_lead, alice, default_sequence
):
    lead = make_lead(alice)

    sends = selectors.sends_if_enrolled(default_sequence, lead)

    assert [send.at for send in sends] == EXPECTED
    assert NEW_YEAR in sends[1].reasons


def test_managers_see_the_enrollments_and_messages_of_their_own_leads_only(
    clock, nurtured_lead, alice, bob, olga, django_capture_on_commit_callbacks
):
    clock.move_to(EXPECTED[0])
    with django_capture_on_commit_callbacks(execute=False):
        dispatch_due()

    assert selectors.enrollments_visible_to(alice).count() == 1
    assert selectors.messages_visible_to(alice).count() == 1
    assert not selectors.enrollments_visible_to(bob).exists()
    assert not selectors.messages_visible_to(bob).exists()
    assert selectors.enrollments_visible_to(olga).count() == 1
    assert selectors.messages_visible_to(olga).count() == 1
