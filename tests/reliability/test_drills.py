"""The crash and outage drills (benchmarks/drills.py), small and fast: 300 leads, a beat tick
every 2 s, 6-second leases, Redis down 4 s. Real worker and beat processes, PostgreSQL, a
private redis-server and an SMTP sink counting by Message-ID."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from tests.services import IN_CI

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 110  # seconds for all five drills


@pytest.fixture
def drill_database():
    """A PostgreSQL database of this run's own on the suite's server, dropped after."""
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("the drills need PostgreSQL: they run in the PostgreSQL pass")
    host, port = db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)
    user = db.get("USER") or "postgres"
    name = f"crm_drill_{uuid.uuid4().hex[:12]}"
    params = {"host": host, "port": port, "user": user, "dbname": "postgres", "autocommit": True}
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    with psycopg.connect(**params) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    yield f"postgres://{user}{password}@{host}:{port}/{name}"
    with psycopg.connect(**params) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_every_drill_sends_each_email_at_most_once_and_loses_none(drill_database, tmp_path):
    if shutil.which("redis-server") is None:  # the drills start a Redis of their own
        if IN_CI:
            pytest.fail("redis-server is not installed, and CI requires it")
        pytest.skip("redis-server is not installed")
    env = {**os.environ, "DATABASE_URL": drill_database}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    drill = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "drills.py"),
            "--leads=300",
            "--tick=2",
            "--lease=6",
            "--lost-after=5",
            "--outage=4",
            "--timeout=30",
            "--json",
            f"--folder={tmp_path}",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = drill.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        drill.terminate()  # it stops its worker, beat, Redis and sink on the way out
        stdout, stderr = drill.communicate(timeout=30)
        pytest.fail(f"the drills took over {TIMEOUT} s (logs in {tmp_path}): {stderr[-3000:]}")
    assert drill.returncode == 0, f"logs in {tmp_path}: {stderr[-3000:]}"
    results = {r["drill"]: r for r in json.loads(stdout.splitlines()[-1])}

    assert set(results) == {"kill", "redis", "postgres", "halt", "inbound"}
    for name, r in results.items():
        assert r["drain_s"] is not None, f"{name}: not drained within 30 s: {r}"
        assert r["duplicates"] == 0, f"{name}: an email arrived twice: {r}"
        assert r["after_halt"] == 0, f"{name}: an email arrived after its halt: {r}"
        assert r["lost_silently"] == 0 and r["stuck"] == 0, f"{name}: {r}"
        assert r["unknown_untold"] == 0, f"{name}: an unknown email's manager was not told: {r}"
        # Everything is at the sink except what was halted (cancelled) or, unknown, never came.
        assert (
            r["at_sink"] + r["states"].get("cancelled", 0) + r["unknown"] - r["unknown_at_sink"]
            >= r["due"]
        ), f"{name}: {r}"
    # Only a worker killed outright leaves anything unknown: the email it was handing over.
    assert all(r["unknown"] == 0 for name, r in results.items() if name != "kill"), results
    assert results["kill"]["unknown"] <= 4, results["kill"]
    assert results["halt"]["halted"] > 0
