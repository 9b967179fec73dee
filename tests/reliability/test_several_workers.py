"""Two `celery worker` processes (each on a "machine" of its own: its own var folder and
journal) and two dispatchers running at once, on RabbitMQ and on Redis: every due message
reaches a real SMTP sink exactly once, by Message-ID."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.db import connection

from benchmarks.drills import Config, Process, Sink, setup
from nurture.models import OutboundMessage
from tests.services import require_service

LIVE = pytest.mark.django_db(transaction=True, serialized_rollback=True)
ROOT = Path(__file__).resolve().parents[2]
LEADS = 200
WAIT = 60  # seconds: the bound on the wait for every email
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("TEST_REDIS_WORKERS_URL", "redis://127.0.0.1:6379/12")
BROKERS = {"rabbitmq": (RABBITMQ_URL, "RabbitMQ", 5672), "redis": (REDIS_URL, "Redis", 6379)}


def database_url() -> str:
    db = connection.settings_dict
    return (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def runner(prefix: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.reliability.runner", prefix, *args]


@LIVE
@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("broker", BROKERS)
def test_two_workers_and_two_dispatchers_send_every_email_exactly_once(broker, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the workers are processes of their own: runs in the PostgreSQL pass")
    url, name, port = BROKERS[broker]
    require_service(name, "127.0.0.1", port)
    setup(
        Config(
            LEADS,
            lease=600,
            tick=60,
            lost_after=30,
            outage=0,
            timeout=0,
            folder=tmp_path,
            database_url=database_url(),
        )
    )
    prefix = f"crm-test-{uuid.uuid4().hex[:12]}"
    sink = Sink(tmp_path)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": url,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
        "EMAIL_USE_TLS": "false",
        "EMAIL_USE_SSL": "false",
        "NURTURE_SEND_BATCH": "10",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("EMAIL_URL", None)
    workers = [
        Process(
            runner(
                prefix,
                "worker",
                "--concurrency=2",
                f"-n=w{n}-{prefix}@%h",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ),
            {**env, "CRM_VAR_DIR": str(tmp_path / f"crm-tests-machine{n}")},
            tmp_path / f"worker{n}.log",
        )
        for n in (1, 2)
    ]
    try:
        for worker in workers:
            worker.start()
        dispatchers = [
            subprocess.Popen(
                runner(prefix, "dispatch", "10"),
                env={**env, "CRM_VAR_DIR": str(tmp_path / "crm-tests-dispatch")},
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        created = [int(d.communicate(timeout=WAIT)[0]) for d in dispatchers]
        assert sum(created) == LEADS  # each due enrollment dispatched by one of them
        assert all(created), f"one dispatcher did nothing: {created}"

        deadline = time.monotonic() + WAIT
        while len({mid for _, mid in sink.received()}) < LEADS:
            assert time.monotonic() < deadline, f"{sink.count()} of {LEADS} emails in {WAIT} s"
            time.sleep(0.1)
        time.sleep(1)  # a second copy, if any, would be on its way
    finally:
        for worker in workers:
            worker.stop()
        sink.stop()
        subprocess.run(runner(prefix, "cleanup"), env=env, cwd=ROOT, timeout=30, check=False)
        if broker == "redis":
            client = redis.Redis.from_url(url)
            for key in client.scan_iter(match=f"*{prefix}*"):
                client.delete(key)

    message_ids = [mid for _, mid in sink.received()]
    assert len(message_ids) == LEADS and len(set(message_ids)) == LEADS  # exactly once each
    assert set(message_ids) == set(OutboundMessage.objects.values_list("message_id", flat=True))
    assert set(OutboundMessage.objects.values_list("state", flat=True)) == {"sent"}
    logs = [worker.log.read_text() for worker in workers]
    assert all("succeeded" in log for log in logs), "both workers sent some"
