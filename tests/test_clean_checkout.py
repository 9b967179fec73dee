"""The README's set-up, from the files a clean clone has: the checks and migrations run clean
in the environment `make run` gives them, and that environment's secret key is the checkout's
own, written once."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from honcho.environ import parse as parse_env_file

ROOT = Path(__file__).resolve().parent.parent
DEV_ENV = "var/development.env"  # the Makefile's DEV_ENV
# What the suite's own environment sets for itself; a newcomer's shell has none of it.
SUITE_VARIABLES = {
    "DATABASE_URL",
    "DJANGO_SETTINGS_MODULE",
    "CELERY_BROKER_URL",
    "CRM_VAR_DIR",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "DEBUG",
}


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


def make_development_env(folder) -> dict[str, str]:
    """`make run`'s first step: the Makefile writes its environment file (once); `make run`
    hands its variables (read by honcho) to every command it runs."""
    subprocess.run(
        ["make", "--no-print-directory", DEV_ENV], cwd=folder, check=True, capture_output=True
    )
    return parse_env_file((folder / DEV_ENV).read_text())


def manage(checkout, *args):
    env = {key: value for key, value in os.environ.items() if key not in SUITE_VARIABLES}
    env.update(make_development_env(checkout))
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
    assert "login admin / demo" in demo.stdout
    for step in (check, migrate, demo):
        assert "Warning" not in step.stderr, step.stderr
    assert (checkout / "var" / "crm.sqlite3").exists()


@pytest.mark.slow
def test_make_run_writes_a_development_key_of_the_checkouts_own_once(checkout, tmp_path):
    first_run = make_development_env(checkout)
    second_run = make_development_env(checkout)
    shutil.copy2(checkout / "Makefile", tmp_path / "Makefile")
    another_checkout = make_development_env(tmp_path)

    assert first_run["DEBUG"] == "true"
    assert len(first_run["SECRET_KEY"]) >= 50
    assert second_run == first_run  # the same key: sessions survive a second `make run`
    assert another_checkout["SECRET_KEY"] != first_run["SECRET_KEY"]  # generated, not shipped
    assert stat.S_IMODE((checkout / DEV_ENV).stat().st_mode) == 0o600
    ignored = subprocess.run(["git", "check-ignore", "--quiet", DEV_ENV], cwd=ROOT)
    assert ignored.returncode == 0, f"{DEV_ENV} is not git-ignored"


def test_the_suite_writes_nothing_into_the_checkout(settings):
    assert not Path(settings.VAR_DIR).resolve().is_relative_to(ROOT)
    assert not Path(settings.BROKER_DIR).resolve().is_relative_to(ROOT)
    assert not Path(settings.STATIC_ROOT).resolve().is_relative_to(ROOT)
