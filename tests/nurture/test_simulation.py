"""The whole nurture loop with real parts: the database, a broker, a Celery worker and an SMTP
server. Beat is played by the test: it moves the clock to each due moment and calls the task
beat would call; everything after that (the broker, the worker, SMTP) is real."""

import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crm.celery import app as crm_app
from crm.models import Notification
from nurture import tasks
from nurture.models import Enrollment, OutboundMessage
from tests.celery_worker import BROKERS, celery_worker

MSK = ZoneInfo("Europe/Moscow")
LIVE = pytest.mark.django_db(transaction=True, serialized_rollback=True)
SEND = "nurture.tasks.send_messages"

# Alice moves the lead to nurturing on Thursday 18 December 2025 at 15:00, Moscow time. Three
# working days apart on the Russian production calendar, inside the 10:00-18:00 window:
ENROLLED_AT = datetime(2025, 12, 18, 15, 0, tzinfo=MSK)
EXPECTED_SENDS = [
    datetime(2025, 12, 23, 15, 0, tzinfo=MSK),  # Fri 19, Mon 22, Tue 23
    datetime(2025, 12, 26, 15, 0, tzinfo=MSK),  # Wed 24, Thu 25, Fri 26
    # Mon 29, Tue 30; Wed 31 Dec is a day off (moved from Sun 5 Jan 2025), 1-8 Jan are the
    # New Year holidays and Christmas, Fri 9 Jan is a day off (moved from Sat 3 Jan), then the
    # weekend: the third working day is Monday 12 January.
    datetime(2026, 1, 12, 15, 0, tzinfo=MSK),
    datetime(2026, 1, 15, 15, 0, tzinfo=MSK),  # Tue 13, Wed 14, Thu 15
    datetime(2026, 1, 20, 15, 0, tzinfo=MSK),  # Fri 16, Mon 19, Tue 20
    datetime(2026, 1, 23, 15, 0, tzinfo=MSK),  # Wed 21, Thu 22, Fri 23
]
QUESTION = "Принято ли решение по проекту «Shop»?"
PLEA = "Очень хотим с Вами работать :) Принято ли решение по проекту «Shop»?"
ALICE = "Alice Manager <alice@crm.example>"


@pytest.fixture
def clock_start():
    """Thursday 18 December 2025, 15:00:00 in Moscow: the clock stands still until the first beat
    tick (so the enrollment's moments are whole minutes); from then on it ticks, so the worker's
    timers and timeouts work while the test jumps from one due moment to the next."""
    return ENROLLED_AT


@pytest.fixture
def alices_lead(clock, nurtured_lead):
    """Ivan's lead (project "Shop", Russian), alice's, moved to nurturing at ENROLLED_AT."""
    return nurtured_lead


def date_header(email) -> datetime:
    """The email's Date; "-0000" (UTC, as Django writes it) parses as naive."""
    date = parsedate_to_datetime(email["Date"])
    return date if date.tzinfo else date.replace(tzinfo=UTC)


def beat_tick(clock, moment) -> int:
    """Beat's periodic task, at `moment`: what the worker gets is enqueued on commit."""
    clock.move_to(moment, tick=True)
    return tasks.dispatch_due()


@pytest.mark.slow
@LIVE
@pytest.mark.parametrize("broker", BROKERS)
def test_six_emails_go_out_three_working_days_apart_then_nurturing_completes(
    broker, clock, alices_lead, smtp_server, alice, tmp_path
):
    enrollment = alices_lead.enrollments.get()
    with celery_worker(broker, tmp_path) as worker:
        for number, planned in enumerate(EXPECTED_SENDS, start=1):
            enrollment.refresh_from_db()
            assert (enrollment.state, enrollment.next_send_at) == (
                Enrollment.State.ACTIVE,
                planned,
            )
            assert beat_tick(clock, planned - timedelta(minutes=1)) == 0  # not a minute early

            assert beat_tick(clock, planned) == 1

            smtp_server.handler.wait_for(number)
            # The worker is done with the database once its task has finished (on SQLite the
            # test must not read while the worker writes: shared-cache tables lock, not wait).
            last = worker.finished.wait_for(number, name=SEND)[-1]
            message = OutboundMessage.objects.get(enrollment=enrollment, number=number)
            assert (last.args, last.retval) == (([message.pk],), {message.pk: "sent"})

        # A month later beat still runs every minute: there is nothing left to send.
        assert beat_tick(clock, EXPECTED_SENDS[-1] + timedelta(days=31)) == 0
        # A copy of the last task, queued behind anything still on the broker: once the worker
        # has run it, every earlier message has been handled too.
        tasks.send_messages.delay([message.pk])
        runs = worker.finished.wait_for(7, name=SEND)

    assert [list(run.retval.values()) for run in runs] == [["sent"]] * 6 + [["already sent"]]
    emails = smtp_server.received
    assert len(emails) == 6
    messages = list(OutboundMessage.objects.filter(enrollment=enrollment).order_by("number"))
    assert [m.state for m in messages] == [OutboundMessage.State.SENT] * 6
    for number, (email, message, planned) in enumerate(
        zip(emails, messages, EXPECTED_SENDS, strict=True), start=1
    ):
        assert planned <= message.sent_at < planned + timedelta(minutes=1)
        assert planned - timedelta(seconds=1) <= date_header(email) < planned + timedelta(minutes=1)
        assert email["Message-ID"] == message.message_id
        assert email.rcpt_tos == ["ivan@client.example"]
        assert (email["From"], email["Reply-To"]) == (ALICE, ALICE)
        assert email["Subject"] == "Проект «Shop»"
        assert "Ivan, добрый день!" in email.text
        if number % 2:
            assert QUESTION in email.text
            assert "Очень хотим" not in email.text
        else:
            assert PLEA in email.text
        assert "Best regards,\nAlice" in email.text

    enrollment.refresh_from_db()
    assert enrollment.state == Enrollment.State.COMPLETED
    assert (enrollment.sent_count, enrollment.next_send_at) == (6, None)
    notes = list(Notification.objects.filter(user=alice).order_by("id").values_list("message"))
    assert [note for (note,) in notes] == [
        *(f"Email {n} of 6 sent to Ivan Petrov." for n in range(1, 7)),
        "Ivan Petrov got all 6 emails of “Дожимаем лида / Lead nurturing” and never answered.",
    ]


@pytest.mark.slow
@LIVE
@pytest.mark.parametrize("broker", BROKERS)
def test_a_worker_sends_a_managers_emails_due_together_over_one_smtp_connection(
    broker, clock, make_lead, alice, smtp_server, tmp_path
):
    for n in range(4):
        make_lead(
            alice,
            status_code="nurturing",
            first_name=f"Client{n}",
            email=f"client{n}@client.example",
            language="ru",
        )

    with celery_worker(broker, tmp_path) as worker:
        assert beat_tick(clock, EXPECTED_SENDS[0]) == 4
        smtp_server.handler.wait_for(4)
        outcomes = worker.finished.wait_for_outcomes(4, name=SEND)

    assert list(outcomes.values()) == ["sent"] * 4
    assert sorted(email.rcpt_tos[0] for email in smtp_server.received) == [
        f"client{n}@client.example" for n in range(4)
    ]
    assert smtp_server.handler.connections == 1


@pytest.mark.slow
@LIVE
def test_the_embedded_brokers_worker_survives_finding_a_message_still_being_written(
    clock, alices_lead, smtp_server, tmp_path
):
    """kombu's own filesystem transport publishes by creating the message file and then
    writing it, so a polling worker could find an empty file; ours renames finished files into
    place, and a worker that still finds an unreadable file skips it instead of dying."""
    with celery_worker("filesystem", tmp_path) as worker:
        folder = Path(crm_app.conf.broker_transport_options["data_folder_in"])
        (folder / f"0_{uuid.uuid4()}.celery.msg").touch()  # created, not yet written
        assert beat_tick(clock, EXPECTED_SENDS[0]) == 1
        [run] = worker.finished.wait_for(1, name=SEND)

    assert list(run.retval.values()) == ["sent"]
    assert len(smtp_server.handler.wait_for(1)) == 1
