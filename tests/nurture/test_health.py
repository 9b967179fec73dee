"""GET /healthz: each check failing for real (a closed port, a stale beat, a late email), and an
answer that names the checks and leaks nothing."""

import socket
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from django.db.utils import ConnectionHandler
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from crm.celery import app as celery_app
from nurture import health, tasks
from nurture.models import OutboundMessage
from tests.services import REDIS_URL, require_service

MSK = ZoneInfo("Europe/Moscow")
CHECKS = ["database", "broker", "beat", "sending", "unknown"]


def ask(client, **extra):
    response = client.get("/healthz", **extra)
    return response.status_code, {
        name: check["status"] for name, check in response.json()["checks"].items()
    }


def beat_ran(at):
    PeriodicTask.objects.filter(task=health.DISPATCH_TASK).update(last_run_at=at)


def closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def beat_just_ran(db, clock):
    beat_ran(timezone.now())


@pytest.fixture
def broker_url():
    """Point the app's producers at another broker until the test ends."""
    saved = celery_app.conf.broker_url

    def point_at(url):
        celery_app.conf.broker_url = url

    yield point_at
    celery_app.conf.broker_url = saved


def test_a_healthy_installation_answers_200_and_names_every_check(client, beat_just_ran):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert list(body["checks"]) == CHECKS
    assert all(check["status"] == "ok" for check in body["checks"].values())
    assert body["checks"]["beat"]["meaning"] == (
        "Celery beat started the email dispatcher within the last 10 minutes."
    )
    assert response["Cache-Control"].startswith("max-age=0")


def test_an_unreachable_broker_fails_the_broker_check_and_the_answer_names_no_host(
    client, beat_just_ran, broker_url
):
    port = closed_port()
    broker_url(f"redis://127.0.0.1:{port}/0")

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert body["checks"]["broker"]["status"] == "failing"
    assert [name for name, c in body["checks"].items() if c["status"] == "failing"] == ["broker"]
    text = response.content.decode()
    assert "127.0.0.1" not in text and str(port) not in text and "refused" not in text.lower()


def test_an_unreachable_rabbitmq_fails_the_broker_check(client, beat_just_ran, broker_url):
    broker_url(f"amqp://guest:guest@127.0.0.1:{closed_port()}//")

    assert ask(client) == (503, {**dict.fromkeys(CHECKS, "ok"), "broker": "failing"})


@pytest.mark.redis
def test_a_reachable_redis_passes_the_broker_check(client, beat_just_ran, broker_url):
    require_service("Redis", "127.0.0.1", 6379)
    broker_url(REDIS_URL)

    assert ask(client) == (200, dict.fromkeys(CHECKS, "ok"))


def test_the_embedded_broker_fails_when_its_folder_cannot_be_written(
    client, beat_just_ran, tmp_path
):
    saved = celery_app.conf.broker_transport_options
    celery_app.conf.broker_transport_options = {
        **saved,
        "data_folder_in": str(tmp_path / "gone"),
        "data_folder_out": str(tmp_path / "gone"),
    }
    try:
        status, checks = ask(client)
    finally:
        celery_app.conf.broker_transport_options = saved

    assert (status, checks["broker"]) == (503, "failing")


def test_beat_fails_when_it_has_not_run_the_dispatcher_for_ten_minutes(client, db, clock):
    beat_ran(datetime(2025, 11, 20, 19, 30, tzinfo=MSK))

    clock.move_to(datetime(2025, 11, 20, 19, 39, tzinfo=MSK))
    nine_minutes_later = ask(client)
    clock.move_to(datetime(2025, 11, 20, 19, 40, 1, tzinfo=MSK))
    cache.clear()  # the last answer is kept a few seconds
    ten_minutes_later = ask(client)

    assert nine_minutes_later == (200, dict.fromkeys(CHECKS, "ok"))
    assert ten_minutes_later == (503, {**dict.fromkeys(CHECKS, "ok"), "beat": "failing"})


def test_beat_fails_when_it_never_ran_in_the_ten_minutes_after_its_schedule_was_set_up(
    client, db, clock
):
    beat_ran(None)
    PeriodicTask.objects.filter(task=health.DISPATCH_TASK).update(date_changed=timezone.now())
    fresh = ask(client)[1]["beat"]
    clock.move_to(datetime(2025, 11, 20, 19, 40, 1, tzinfo=MSK))
    cache.clear()

    assert (fresh, ask(client)[1]["beat"]) == ("ok", "failing")


def test_beat_fails_when_the_dispatcher_is_disabled(client, beat_just_ran):
    PeriodicTask.objects.filter(task=health.DISPATCH_TASK).update(enabled=False)

    assert ask(client)[1]["beat"] == "failing"


@pytest.fixture
def queued_email(clock, nurtured_lead):
    """Ivan's first email, dispatched when due (Wed 26 Nov 10:00) and not sent: no worker."""
    clock.move_to(datetime(2025, 11, 26, 10, 0, tzinfo=MSK))
    assert tasks.dispatch_due() == 1
    return OutboundMessage.objects.get()


def test_an_email_queued_for_more_than_ten_minutes_fails_the_sending_check(
    client, clock, queued_email
):
    beat_ran(datetime(2025, 11, 26, 10, 9, tzinfo=MSK))
    clock.move_to(datetime(2025, 11, 26, 10, 9, tzinfo=MSK))
    soon = ask(client)
    clock.move_to(datetime(2025, 11, 26, 10, 10, 1, tzinfo=MSK))
    beat_ran(datetime(2025, 11, 26, 10, 10, tzinfo=MSK))
    cache.clear()
    late = ask(client)

    assert soon == (200, dict.fromkeys(CHECKS, "ok"))
    assert late == (503, {**dict.fromkeys(CHECKS, "ok"), "sending": "failing"})


def test_a_retry_due_more_than_ten_minutes_ago_fails_the_sending_check(client, clock, queued_email):
    now = datetime(2025, 11, 26, 11, 0, tzinfo=MSK)
    clock.move_to(now)
    beat_ran(now)
    OutboundMessage.objects.filter(pk=queued_email.pk).update(
        state=OutboundMessage.State.RETRY, retry_at=now - timedelta(minutes=11)
    )

    assert ask(client)[1]["sending"] == "failing"


def test_a_retry_not_yet_due_is_on_time(client, clock, queued_email):
    now = datetime(2025, 11, 26, 11, 0, tzinfo=MSK)
    clock.move_to(now)
    beat_ran(now)
    OutboundMessage.objects.filter(pk=queued_email.pk).update(
        state=OutboundMessage.State.RETRY, retry_at=now + timedelta(minutes=16)
    )

    assert ask(client) == (200, dict.fromkeys(CHECKS, "ok"))


def test_an_email_that_became_unknown_fails_the_check_for_an_hour(client, clock, queued_email):
    expired = datetime(2025, 11, 26, 10, 10, tzinfo=MSK)
    OutboundMessage.objects.filter(pk=queued_email.pk).update(
        state=OutboundMessage.State.UNKNOWN, lease_expires_at=expired
    )
    clock.move_to(expired + timedelta(minutes=59))
    beat_ran(expired + timedelta(minutes=59))
    within_the_hour = ask(client)
    clock.move_to(expired + timedelta(minutes=61))
    beat_ran(expired + timedelta(minutes=61))
    cache.clear()
    after_it = ask(client)

    assert within_the_hour == (503, {**dict.fromkeys(CHECKS, "ok"), "unknown": "failing"})
    assert after_it == (200, dict.fromkeys(CHECKS, "ok"))


def test_an_unreachable_database_fails_it_and_every_check_that_reads_it(
    client, beat_just_ran, monkeypatch
):
    port = closed_port()
    unreachable = ConnectionHandler(
        {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": port,
                "NAME": "crm",
                "USER": "crm",
                "OPTIONS": {"connect_timeout": 2},
            }
        }
    )["default"]
    real_check = health.database_ok
    monkeypatch.setattr(health, "database_ok", lambda: real_check(unreachable))

    response = client.get("/healthz")

    assert response.status_code == 503
    assert {name: c["status"] for name, c in response.json()["checks"].items()} == {
        "database": "failing",
        "broker": "ok",
        "beat": "failing",
        "sending": "failing",
        "unknown": "failing",
    }
    assert str(port) not in response.content.decode()


def test_a_flood_of_requests_costs_one_round_of_checks(
    client, beat_just_ran, django_assert_num_queries
):
    client.get("/healthz")

    with django_assert_num_queries(0):
        for _ in range(20):
            assert client.get("/healthz").status_code == 200


def test_only_get_and_head_are_answered(client, beat_just_ran):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_with_a_token_set_a_request_must_carry_it(client, beat_just_ran, settings):
    settings.HEALTHZ_TOKEN = "s3cret-token"

    assert client.get("/healthz").status_code == 401
    assert client.get("/healthz", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/healthz?token=wrong").status_code == 403
    assert client.get("/healthz", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    assert client.get("/healthz?token=s3cret-token").status_code == 200


def test_a_monitor_asking_over_plain_http_is_answered_not_redirected(
    client, beat_just_ran, settings
):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/login/").status_code == 301
