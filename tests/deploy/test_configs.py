"""The shipped systemd units, logrotate file and environment example, checked by the tools that
read them: systemd-analyze, logrotate, and Django's deployment checks."""

import gc
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import IN_CI

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def environment_file(path: Path) -> dict:
    """KEY=value lines as systemd's EnvironmentFile= reads them (comments and blanks skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(f"{message}, and CI requires it")
        pytest.skip(message)
    return found


def test_the_systemd_units_are_valid_for_systemd(tmp_path):
    systemd_analyze = tool("systemd-analyze")
    units = []
    for unit in UNITS:
        # This checkout and this machine's user stand in for /opt/crm and the crm user, so
        # that every ExecStart names a program that exists.
        text = unit.read_text().replace("/opt/crm/.venv/bin", str(Path(sys.executable).parent))
        text = text.replace("/opt/crm", str(ROOT))
        text = text.replace("/etc/crm/crm.env", str(DEPLOY / "crm.env.example"))
        text = text.replace("User=crm", "User=root").replace("Group=crm", "Group=root")
        name = unit.name.replace("@.", "@1.")
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))

    checked = subprocess.run(  # noqa: S603 - systemd's own tool
        [systemd_analyze, "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_every_process_reads_the_one_environment_file():
    for unit in UNITS:
        assert "EnvironmentFile=/etc/crm/crm.env\n" in unit.read_text(), unit.name


def test_the_workers_take_the_beat_queue_too_by_default():
    worker = (DEPLOY / "systemd" / "crm-worker@.service").read_text()
    assert "Environment=CRM_WORKER_QUEUES=celery,beat\n" in worker
    assert "--queues=${CRM_WORKER_QUEUES}" in worker


def test_the_logrotate_file_is_valid_for_logrotate(tmp_path):
    logrotate = tool("logrotate")
    config = tmp_path / "crm"
    # The machine's own user stands in for crm.
    config.write_text((DEPLOY / "logrotate" / "crm").read_text().replace(" crm crm", " root root"))
    config.chmod(0o644)

    checked = subprocess.run(  # noqa: S603 - logrotate's dry run
        [logrotate, "--debug", "--state", str(tmp_path / "state"), str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert checked.returncode == 0, checked.stderr
    assert "error" not in checked.stderr.lower(), checked.stderr


def test_the_environment_example_passes_the_deployment_checks(tmp_path):
    env = {
        **environment_file(DEPLOY / "crm.env.example"),
        # This machine's stand-ins for the server's folders, and a real secret.
        "PATH": os.environ.get("PATH", ""),
        "SECRET_KEY": os.urandom(32).hex(),
        "CRM_VAR_DIR": str(tmp_path / "var"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }

    checked = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_web_worker_keeps_what_it_loaded_out_of_full_garbage_collections():
    config = runpy.run_path(str(Path(__file__).parents[2] / "deploy" / "gunicorn.conf.py"))
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        config["post_worker_init"](worker=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
