"""Run Celery beat only while this process holds the installation's beat lock, so that however
many machines start one, at most one beat runs (deploy/systemd/crm-beat.service):

    .venv/bin/python deploy/beat_guard.py -- .venv/bin/celery -A crm beat --loglevel=INFO

The lock is a PostgreSQL advisory lock on the CRM's own database (DATABASE_URL), held by this
process's own connection for as long as beat runs. A guard that does not get it stands by and
tries again every few seconds; when the holder stops (or its machine dies), a standby takes
over. The guard checks its connection every few seconds; when that fails, the lock may be gone,
so it stops beat and exits with 1 (systemd restarts it, and it stands by again).

Limits, honestly:
- Without PostgreSQL (the SQLite default) there is nothing to lock across machines: the guard
  says so and runs beat; systemd alone keeps one beat on one machine.
- Two beats can overlap for up to CHECK_SECONDS when the database ends the session before the
  holder notices (pg_terminate_backend, a database restart, a holder frozen longer than the
  keepalives). A network cut is safe: the holder's checks fail within about ten seconds, and
  the server gives up the session (and the lock) only after its own keepalives, later. An
  overlap does no harm beyond extra work: every due email is claimed once in the database.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# "crm-beat" as a number: one lock per database, whatever else uses advisory locks there.
LOCK_KEY = int.from_bytes(b"crm-beat", "big") & (2**63 - 1)
CHECK_SECONDS = 5  # how often the holder checks its connection
RETRY_SECONDS = 5  # how often a standby tries to take the lock
STOP_SECONDS = 30  # how long beat may take to stop before it is killed
# libpq's own timeouts on the lock's connection: a dead network fails a check within ~10 s,
# and the server notices a dead guard after about 5 + 3 * 2 s of silence.
CONNECTION_OPTIONS = {
    "autocommit": True,
    "application_name": "crm-beat-guard",
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def log(message: str) -> None:
    print(f"beat_guard: {message}", file=sys.stderr, flush=True)


def connection_params() -> dict | None:
    """The CRM's database as psycopg connection arguments; None when it is not PostgreSQL."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    import django
    from django.db import connection

    django.setup()
    if connection.vendor != "postgresql":
        return None
    return {**connection.get_connection_params(), **CONNECTION_OPTIONS}


def take_lock(params: dict):
    """A connection that holds the lock, or None while another guard holds it."""
    import psycopg

    try:
        lock = psycopg.connect(**params)
        got = lock.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()[0]
    except psycopg.Error as error:
        log(f"cannot reach the database: {error}".strip())
        return None
    if got:
        return lock
    lock.close()
    return None


def still_held(lock) -> bool:
    import psycopg

    try:
        lock.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def stop(child: subprocess.Popen) -> int:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def main(command: list[str]) -> int:
    params = connection_params()
    if params is None:
        log("the database is not PostgreSQL: no lock across machines, running beat as it is")
        os.execvp(command[0], command)  # noqa: S606 - the command given on our command line

    stopping = False
    child = None

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.terminate()  # beat stops at once; the loop below sees why

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    said_standby = False
    while not stopping:
        lock = take_lock(params)
        if lock is not None:
            break
        if not said_standby:
            log("another beat holds the lock: standing by")
            said_standby = True
        time.sleep(RETRY_SECONDS)
    else:
        return 0

    log(f"took the beat lock; starting {' '.join(command)}")
    child = subprocess.Popen(command)  # noqa: S603 - the command given on our command line
    try:
        while True:
            try:
                code = child.wait(CHECK_SECONDS)
            except subprocess.TimeoutExpired:
                code = None
            if stopping:
                stop(child)
                return 0
            if code is not None:
                log(f"beat exited with {code}")
                return code
            if not still_held(lock):
                log("lost the database connection, and with it the lock: stopping beat")
                stop(child)
                return 1
    finally:
        lock.close()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments:
        sys.exit("usage: beat_guard.py -- celery -A crm beat [options]")
    sys.exit(main(arguments))
