"""The README's set-up, from the files a clean clone has: the checks and migrations run clean."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """The files git would put in a fresh clone, copied to a temporary folder."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    target = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name.decode())
    return target


def manage(checkout, *args):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL", "CRM_VAR_DIR"}
    }
    env["PYTHONWARNINGS"] = "always"
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_clean_checkout_passes_the_checks_and_migrates_without_warnings(checkout):
    check = manage(checkout, "check")
    migrations_match_models = manage(checkout, "makemigrations", "--check", "--dry-run")
    migrate = manage(checkout, "migrate", "--noinput")
    demo = manage(checkout, "load_demo")

    assert check.returncode == 0, check.stderr
    assert "no issues (0 silenced)" in check.stdout
    assert migrations_match_models.returncode == 0, migrations_match_models.stdout
    assert migrate.returncode == 0, migrate.stderr
    assert demo.returncode == 0, demo.stderr
    for step in (check, migrate, demo):
        assert "Warning" not in step.stderr, step.stderr
    assert (checkout / "var" / "crm.sqlite3").exists()


def test_the_suite_writes_nothing_into_the_checkout(settings):
    assert not Path(settings.VAR_DIR).resolve().is_relative_to(ROOT)
    assert not Path(settings.BROKER_DIR).resolve().is_relative_to(ROOT)
    assert not Path(settings.STATIC_ROOT).resolve().is_relative_to(ROOT)
