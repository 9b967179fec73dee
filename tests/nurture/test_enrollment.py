from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django_celery_beat.models import PeriodicTask

from crm import services as crm_services
from nurture import services
from nurture.models import CalendarDay, Enrollment, Sequence

MSK = ZoneInfo("Europe/Moscow")


@pytest.fixture
def nurture(alice, django_capture_on_commit_callbacks):
    def move(lead):
        with django_capture_on_commit_callbacks(execute=True):
            crm_services.change_status(lead, "nurturing", by=alice)
        return lead.enrollments.get(state=Enrollment.State.ACTIVE)

    return move


def test_the_default_sequence_reproduces_the_article(default_sequence):
    texts = {(t.position, t.language): t.body_text for t in default_sequence.templates.all()}

    assert default_sequence.enrolling_status.code == "nurturing"
    assert (default_sequence.interval_working_days, default_sequence.max_messages) == (3, 6)
    assert "Принято ли решение по проекту «{{ lead.title }}»?" in texts[1, "ru"]
    assert (
        "Очень хотим с Вами работать :) Принято ли решение по проекту «{{ lead.title }}»?"
        in texts[2, "ru"]
    )
    assert set(texts) == {(1, "ru"), (2, "ru"), (1, "en"), (2, "en")}


def test_beat_dispatches_every_minute_from_the_database_schedule(db, settings):
    task = PeriodicTask.objects.get(task="nurture.tasks.dispatch_due")

    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")
    assert settings.CELERY_BEAT_SCHEDULER == "django_celery_beat.schedulers:DatabaseScheduler"


def test_the_sending_window_applies_in_the_leads_own_time_zone(clock, make_lead, alice, nurture):
    lead = make_lead(alice, time_zone="Asia/Yekaterinburg")  # UTC+5, Moscow is UTC+3

    enrollment = nurture(lead)

    # 19:30 Moscow is 21:30 in Yekaterinburg: Thu -> Tue 21:30 -> Wed 10:00 local.
    assert enrollment.next_send_at == datetime(
        2025, 11, 26, 10, 0, tzinfo=ZoneInfo("Asia/Yekaterinburg")
    )


def test_a_company_day_off_from_the_admin_moves_the_send(clock, make_lead, alice, nurture):
    CalendarDay.objects.create(date=datetime(2025, 11, 26).date(), kind="day_off", note="Offsite")

    enrollment = nurture(make_lead(alice))

    assert enrollment.next_send_at == datetime(2025, 11, 27, 10, 0, tzinfo=MSK)


def test_an_inactive_sequence_enrolls_nobody(clock, make_lead, alice, nurture, default_sequence):
    Sequence.objects.filter(pk=default_sequence.pk).update(is_active=False)

    with pytest.raises(Enrollment.DoesNotExist):
        nurture(make_lead(alice))


def test_a_lead_has_at_most_one_active_enrollment_per_sequence(
    clock, make_lead, alice, nurture, default_sequence
):
    lead = make_lead(alice)
    nurture(lead)

    assert services.enroll(lead, default_sequence) is None
    assert lead.enrollments.count() == 1


def test_restart_halts_the_old_enrollment_and_starts_from_the_first_email(
    clock, make_lead, alice, nurture
):
    old = nurture(make_lead(alice))

    new = services.restart(old)

    old.refresh_from_db()
    assert (old.state, old.halt_reason) == (Enrollment.State.HALTED, "manual")
    assert (new.state, new.sent_count) == (Enrollment.State.ACTIVE, 0)
