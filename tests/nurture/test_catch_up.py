"""After an outage (beat, the workers or the broker down), catch-up sends and retries keep the
rules planned sends keep: inside the sending window (10:00-18:00), in the lead's time zone, on
working days only, within the mailbox caps and spread over the minutes; and the email after a
late one comes three working days after the late one went.

Beat is played by the test: it moves the clock and calls the task beat calls. The workers run
the tasks at once (eager), or not at all while they are "down"; the SMTP server is real.
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm import services as crm_services
from nurture import outbox, sending, tasks
from nurture.dispatch import dispatch_due
from nurture.models import Enrollment, MailboxLimit, OutboundMessage

MSK = ZoneInfo("Europe/Moscow")  # the company's
YEKATERINBURG = ZoneInfo("Asia/Yekaterinburg")  # Moscow + 2
KALININGRAD = ZoneInfo("Europe/Kaliningrad")  # Moscow - 1
State = OutboundMessage.State

# On the Russian calendar: Friday 21 November 2025, the weekend, Monday 24, ..., Thursday 27.
FRIDAY = datetime(2025, 11, 21, tzinfo=MSK)
MONDAY = datetime(2025, 11, 24, tzinfo=MSK)
TUESDAY = datetime(2025, 11, 25, tzinfo=MSK)
WEDNESDAY = datetime(2025, 11, 26, tzinfo=MSK)
THURSDAY = datetime(2025, 11, 27, tzinfo=MSK)


def at(day: datetime, hour: int, minute: int = 0, zone: ZoneInfo = MSK) -> datetime:
    """`day`'s date at hour:minute on the wall clock of `zone`."""
    return datetime.combine(day.date(), datetime.min.time(), tzinfo=zone).replace(
        hour=hour, minute=minute
    )


@pytest.fixture
def clock_start():
    """Tuesday 18 November 2025, 12:00 in Moscow: the leads are enrolled then."""
    return datetime(2025, 11, 18, 12, 0, tzinfo=MSK)


@pytest.fixture
def lead_due(clock, make_lead, alice, django_capture_on_commit_callbacks):
    """A lead of alice's in nurturing whose first email is planned for `planned`; `zone` is the
    lead's time zone ("" for the company's)."""

    def make(name: str, planned: datetime, zone: str = ""):
        lead = make_lead(alice, first_name=name, email=f"{name.lower()}@client.example")
        lead.time_zone = zone
        lead.save()
        with django_capture_on_commit_callbacks(execute=True):
            crm_services.change_status(lead, "nurturing", by=alice)
        lead.enrollments.update(next_send_at=planned)
        return lead

    return make


@pytest.fixture
def beat(clock, eager_tasks, smtp_server, django_capture_on_commit_callbacks):
    """Beat's every-minute task at `moment`, the workers up (the tasks it publishes run at once):
    returns who got an email in that tick, by first name of the address."""

    def tick(moment: datetime) -> list[str]:
        clock.move_to(moment)
        before = len(smtp_server.received)
        with django_capture_on_commit_callbacks(execute=True):
            tasks.dispatch_due()
        return sorted(e.rcpt_tos[0].split("@")[0] for e in smtp_server.received[before:])

    return tick


@pytest.fixture
def beat_without_workers(clock, django_capture_on_commit_callbacks):
    """Beat's task at `moment` while the workers are down (or the broker: the sends it
    publishes are never carried out); returns the ids of the messages it dispatched."""

    def tick(moment: datetime) -> list[int]:
        clock.move_to(moment)
        with django_capture_on_commit_callbacks(execute=False):
            tasks.dispatch_due()
        return sorted(
            OutboundMessage.objects.filter(created_at=moment).values_list("pk", flat=True)
        )

    return tick


def next_send_at(lead) -> datetime:
    return lead.enrollments.get().next_send_at


# --- Beat down ------------------------------------------------------------------------------


def test_beat_down_from_friday_evening_sends_nothing_at_the_weekend_and_all_on_monday(
    lead_due, beat
):
    ivan = lead_due("Ivan", at(FRIDAY, 17, 30))
    olga = lead_due("Olga", at(FRIDAY, 17, 45))
    # Beat stopped at 17:00 on Friday; it comes back in the night, and at the weekend.
    assert beat(at(FRIDAY, 23, 0)) == []
    assert next_send_at(ivan) == next_send_at(olga) == at(MONDAY, 10)
    assert beat(at(FRIDAY + timedelta(days=1), 12, 0)) == []

    assert beat(at(MONDAY, 9, 59)) == []
    assert beat(at(MONDAY, 10, 0)) == ["ivan", "olga"]


def test_beat_down_inside_the_window_sends_the_backlog_when_it_comes_back(lead_due, beat):
    lead_due("Ivan", at(MONDAY, 11, 0))
    assert beat(at(MONDAY, 15, 30)) == ["ivan"]


def test_a_send_planned_just_before_the_window_closes_still_goes_on_the_next_tick(lead_due, beat):
    ivan = lead_due("Ivan", at(FRIDAY, 17, 59) + timedelta(seconds=30))
    assert beat(at(FRIDAY, 18, 0)) == ["ivan"]  # a tick later: on time, not a catch-up
    assert next_send_at(ivan) == at(WEDNESDAY, 17, 59) + timedelta(seconds=30)


def test_a_send_far_behind_when_the_window_closed_waits_for_the_next_working_morning(
    lead_due, beat
):
    ivan = lead_due("Ivan", at(FRIDAY, 17, 50))
    assert beat(at(FRIDAY, 18, 3)) == []
    assert next_send_at(ivan) == at(MONDAY, 10)


def test_each_lead_gets_its_catch_up_inside_the_window_of_its_own_time_zone(lead_due, beat):
    lead_due("Moscow", at(FRIDAY, 17, 0))
    yekaterinburg = lead_due(
        "Yekaterinburg", at(FRIDAY, 17, 0, YEKATERINBURG), "Asia/Yekaterinburg"
    )
    kaliningrad = lead_due("Kaliningrad", at(FRIDAY, 17, 0, KALININGRAD), "Europe/Kaliningrad")

    # Beat comes back on Monday at 08:00 in Moscow: 10:00 in Yekaterinburg, 07:00 in Kaliningrad.
    assert beat(at(MONDAY, 8, 0)) == ["yekaterinburg"]
    assert next_send_at(kaliningrad) == at(MONDAY, 10, 0, KALININGRAD)
    assert beat(at(MONDAY, 10, 0)) == ["moscow"]
    assert beat(at(MONDAY, 10, 59)) == []
    assert beat(at(MONDAY, 11, 0)) == ["kaliningrad"]  # 10:00 in Kaliningrad
    # The next one, three working days after each actually went:
    assert next_send_at(yekaterinburg) == at(THURSDAY, 10, 0, YEKATERINBURG)
    assert next_send_at(kaliningrad) == at(THURSDAY, 10, 0, KALININGRAD)


def test_a_lead_far_east_is_not_caught_up_after_its_window_closed(lead_due, beat):
    vladivostok = lead_due(
        "Vladivostok", at(FRIDAY, 17, 0, ZoneInfo("Asia/Vladivostok")), "Asia/Vladivostok"
    )
    # 12:00 in Moscow on Monday is 19:00 in Vladivostok: the window there has closed.
    assert beat(at(MONDAY, 12, 0)) == []
    assert next_send_at(vladivostok) == at(TUESDAY, 10, 0, ZoneInfo("Asia/Vladivostok"))


def test_a_weekend_outage_ending_on_a_public_holiday_waits_for_the_day_after(lead_due, beat):
    friday = datetime(2026, 2, 20, tzinfo=MSK)
    holiday = datetime(2026, 2, 23, tzinfo=MSK)  # Defender of the Fatherland Day, a Monday
    ivan = lead_due("Ivan", at(friday, 16, 0))

    assert beat(at(holiday, 12, 0)) == []
    assert next_send_at(ivan) == at(holiday + timedelta(days=1), 10)
    assert beat(at(holiday + timedelta(days=1), 10, 0)) == ["ivan"]


def test_a_company_day_off_counts_as_a_holiday_for_catch_up(lead_due, beat):
    from nurture.models import CalendarDay

    CalendarDay.objects.create(date=MONDAY.date(), kind=CalendarDay.Kind.DAY_OFF)
    ivan = lead_due("Ivan", at(FRIDAY, 16, 0))

    assert beat(at(MONDAY, 11, 0)) == []
    assert next_send_at(ivan) == at(TUESDAY, 10)


# --- The email after a late one -------------------------------------------------------------


def test_the_email_after_a_late_one_comes_three_working_days_after_the_late_one_went(
    lead_due, beat
):
    ivan = lead_due("Ivan", at(FRIDAY, 16, 0))
    assert beat(at(MONDAY, 11, 0)) == ["ivan"]
    # Not Wednesday 16:00 (three working days after Friday's plan): Thursday 11:00.
    assert next_send_at(ivan) == at(THURSDAY, 11, 0)
    assert beat(at(WEDNESDAY, 16, 0)) == []
    assert beat(at(THURSDAY, 11, 0)) == ["ivan"]


# --- Workers down ---------------------------------------------------------------------------


def test_workers_down_overnight_send_what_waited_in_the_morning_window_not_at_dawn(
    lead_due, beat_without_workers, beat, clock, smtp_server
):
    ivan = lead_due("Ivan", at(FRIDAY, 17, 50))
    [message] = beat_without_workers(at(FRIDAY, 17, 50))  # dispatched; no worker takes it
    assert next_send_at(ivan) == at(WEDNESDAY, 17, 50)  # as planned, for now

    # The workers come back on Monday at 07:00 and take the task that waited in the broker.
    clock.move_to(at(MONDAY, 7, 0))
    assert sending.send_messages([message]) == {message: "postponed"}
    postponed = OutboundMessage.objects.get(pk=message)
    assert (postponed.state, postponed.retry_at, postponed.attempts) == (
        State.RETRY,
        at(MONDAY, 10),
        0,
    )
    assert smtp_server.received == []

    assert beat(at(MONDAY, 10, 0)) == ["ivan"]  # beat publishes the retry that is due
    assert OutboundMessage.objects.get(pk=message).state == State.SENT
    # Wednesday 17:50 would be only two working days after Monday 10:00: it moves to Thursday.
    assert beat(at(WEDNESDAY, 17, 50)) == []
    assert next_send_at(ivan) == at(THURSDAY, 10)
    assert beat(at(THURSDAY, 10, 0)) == ["ivan"]


def test_a_task_taken_a_little_late_inside_the_window_is_simply_sent(
    lead_due, beat_without_workers, clock, smtp_server
):
    lead_due("Ivan", at(MONDAY, 11, 0))
    [message] = beat_without_workers(at(MONDAY, 11, 0))
    clock.move_to(at(MONDAY, 13, 0))
    assert sending.send_messages([message]) == {message: "sent"}


# --- The broker down ------------------------------------------------------------------------


def test_broker_back_at_23_00_sends_nothing_until_the_morning_then_everything_once(
    lead_due, beat_without_workers, beat, smtp_server
):
    ivan = lead_due("Ivan", at(MONDAY, 15, 0))
    olga = lead_due("Olga", at(MONDAY, 16, 0))
    # The broker goes down at 15:00: the dispatch commits, its task is never delivered; beat
    # cannot publish its own task after that.
    [lost] = beat_without_workers(at(MONDAY, 15, 0))

    # 23:00: the broker is back, beat's task runs; the lost send is published again.
    assert beat(at(MONDAY, 23, 0)) == []
    assert OutboundMessage.objects.get(pk=lost).retry_at == at(TUESDAY, 10)
    assert next_send_at(olga) == at(TUESDAY, 10)

    assert beat(at(TUESDAY, 10, 0)) == ["ivan", "olga"]
    assert beat(at(TUESDAY, 10, 1)) == []
    assert sorted(e.rcpt_tos[0] for e in smtp_server.received) == [ivan.email, olga.email]
    assert len({e["Message-ID"] for e in smtp_server.received}) == 2


# --- Retries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "failed_at", "expected"),
    [
        # The third attempt fails at 17:50; 16 minutes later the window has closed.
        ("", at(FRIDAY, 17, 50), at(MONDAY, 10)),
        # 17:50 in Yekaterinburg is 15:50 in Moscow: the window closes by Yekaterinburg's clock.
        ("Asia/Yekaterinburg", at(FRIDAY, 17, 50, YEKATERINBURG), at(MONDAY, 10, 0, YEKATERINBURG)),
        # In the window, a retry is simply now plus its backoff.
        ("", at(FRIDAY, 12, 0), at(FRIDAY, 12, 16)),
    ],
)
def test_a_retry_that_would_land_outside_the_window_waits_for_the_next_working_morning(
    lead_due, clock, smtp_server, django_capture_on_commit_callbacks, zone, failed_at, expected
):
    lead_due("Ivan", failed_at - timedelta(hours=1), zone)
    clock.move_to(failed_at)
    with django_capture_on_commit_callbacks(execute=False):
        [message] = dispatch_due()
    OutboundMessage.objects.filter(pk=message).update(attempts=2)
    smtp_server.handler.reply_to_data = ["451 4.3.0 Try again later"]

    assert sending.send_messages([message]) == {message: "retry"}
    retry = OutboundMessage.objects.get(pk=message)
    assert (retry.state, retry.attempts, retry.retry_at) == (State.RETRY, 3, expected)
    clock.move_to(expected - timedelta(minutes=1))
    assert message not in outbox.requeue_due_retries()


# --- Mailbox caps ---------------------------------------------------------------------------


def test_the_backlog_goes_out_within_the_mailbox_caps_spread_over_the_minutes(
    lead_due, beat, alice
):
    MailboxLimit.objects.create(user=alice, per_minute=3, per_day=7)
    leads = [lead_due(f"Lead{n}", at(FRIDAY, 15, n)) for n in range(10)]

    # Beat was down from Friday 15:00 until Monday 10:00: ten sends are due at once.
    first = beat(at(MONDAY, 10, 0))
    assert first == ["lead0", "lead1", "lead2"]
    held = sorted(next_send_at(lead) for lead in leads[3:])
    assert held == [at(MONDAY, 10, 1)] * 3 + [at(MONDAY, 10, 2)] + [at(TUESDAY, 10)] * 3

    sent_per_minute = [len(beat(at(MONDAY, 10, minute))) for minute in range(1, 5)]
    assert sent_per_minute == [3, 1, 0, 0]  # 7 on Monday: the daily cap
    assert beat(at(MONDAY, 17, 0)) == []
    assert len(beat(at(TUESDAY, 10, 0))) == 3
    assert OutboundMessage.objects.count() == 10


def test_the_spreading_goes_on_from_batch_to_batch_of_one_dispatch(
    lead_due, clock, alice, django_capture_on_commit_callbacks
):
    MailboxLimit.objects.create(user=alice, per_minute=2, per_day=100)
    leads = [lead_due(f"Lead{n}", at(FRIDAY, 15, n)) for n in range(7)]
    clock.move_to(at(MONDAY, 10, 0))

    with django_capture_on_commit_callbacks(execute=False):
        assert len(dispatch_due(batch_size=2)) == 2

    held = sorted(next_send_at(lead) for lead in leads[2:])
    assert held == [at(MONDAY, 10, minute) for minute in (1, 1, 2, 2, 3)]


def test_leads_without_a_manager_are_sent_within_the_default_caps(
    make_lead, clock, beat, settings, django_capture_on_commit_callbacks, olga
):
    settings.NURTURE_MAILBOX_PER_MINUTE = 2
    for n in range(5):
        lead = make_lead(None, first_name=f"Lead{n}", email=f"lead{n}@client.example")
        with django_capture_on_commit_callbacks(execute=True):
            crm_services.change_status(lead, "nurturing", by=olga)
    Enrollment.objects.update(next_send_at=at(FRIDAY, 15, 0))

    assert [len(beat(at(MONDAY, 10, minute))) for minute in range(4)] == [2, 2, 1, 0]
