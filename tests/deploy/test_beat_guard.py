"""deploy/beat_guard.py: at most one beat across machines, by a PostgreSQL advisory lock. The
guards run as real processes against a private database; their "beat" is a stand-in that says
it started and then waits, so the test sees which guard runs one."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.services import require_service

ROOT = Path(__file__).resolve().parents[2]
GUARD = ROOT / "deploy" / "beat_guard.py"
SERVER = "postgres://postgres@127.0.0.1:5432"
DEADLINE = 30  # seconds, for anything a guard does

pytestmark = pytest.mark.slow


class Guard:
    """One deploy/beat_guard.py process whose beat writes `started` and sleeps."""

    def __init__(self, folder: Path, name: str, database_url: str):
        self.started = folder / f"{name}.started"
        self.log = folder / f"{name}.log"
        beat = (
            "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)"
        )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "crm.settings",
            "SECRET_KEY": "beat-guard-test",
            "CRM_VAR_DIR": str(folder / "var"),
            "DATABASE_URL": database_url,
        }
        with self.log.open("w") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [sys.executable, str(GUARD), "--", sys.executable, "-c", beat, str(self.started)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def runs_beat(self) -> bool:
        return self.started.exists() and self.started.read_text() != ""

    def says(self, text: str) -> bool:
        return text in self.log.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def eventually(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE} s: {what}")
        time.sleep(0.1)


@pytest.fixture
def database():
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"crm_beat_guard_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def guards(tmp_path, database):
    started = []

    def start(name):
        guard = Guard(tmp_path, name, database)
        started.append(guard)
        return guard

    yield start
    for guard in started:
        if guard.process.poll() is None:
            guard.process.kill()
            guard.process.wait(DEADLINE)


@pytest.mark.postgres
def test_a_second_guard_stands_by_until_the_first_one_stops(guards):
    first = guards("first")
    eventually(first.runs_beat, "the first guard runs beat")
    second = guards("second")
    eventually(lambda: second.says("standing by"), "the second guard stands by")
    assert not second.runs_beat()

    assert first.stop() == 0

    eventually(second.runs_beat, "the second guard takes over")
    assert second.stop() == 0


@pytest.mark.postgres
def test_a_guard_that_loses_its_database_session_stops_its_beat(guards, database):
    guard = guards("holder")
    eventually(guard.runs_beat, "the guard runs beat")
    beat_pid = int(guard.started.read_text())

    with psycopg.connect(database, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'crm-beat-guard' AND datname = current_database()"
        ).fetchall()
    assert ended == [(True,)]

    assert guard.process.wait(DEADLINE) == 1
    assert guard.says("lost the database connection")
    with pytest.raises(ProcessLookupError):
        os.kill(beat_pid, 0)


def test_without_postgresql_the_guard_runs_beat_as_it_is(tmp_path):
    guard = Guard(tmp_path, "alone", f"sqlite:///{tmp_path / 'crm.sqlite3'}")
    try:
        eventually(guard.runs_beat, "beat runs")
        assert guard.says("not PostgreSQL")
    finally:
        guard.process.kill()
        guard.process.wait(DEADLINE)
