"""Safe by default: no secret in the code, DEBUG only where `make run` turns it on, every secure
setting on with DEBUG off (each one an operator can turn off), and `check --deploy` clean."""

import os
import runpy
import secrets
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = ROOT / "crm" / "settings.py"
A_KEY = secrets.token_hex(32)


@pytest.fixture
def environment(tmp_path):
    """A process's environment, and nothing else: only what the test gives it (and a folder)."""
    base = {"PATH": os.environ["PATH"], "CRM_VAR_DIR": str(tmp_path / "var")}
    return lambda **variables: {**base, **variables}


@pytest.fixture
def read_settings(environment):
    """The product's settings (crm/settings.py) as a process with exactly these variables reads
    them."""

    def read(**variables):
        with mock.patch.dict(os.environ, environment(**variables), clear=True):
            return runpy.run_path(str(SETTINGS))

    return read


@pytest.fixture
def manage(environment):
    def run(*args, **variables):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=environment(**variables),
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


# --- The secret key and DEBUG ----------------------------------------------------------------


def test_with_nothing_set_but_a_key_debug_is_off(read_settings):
    assert read_settings(SECRET_KEY=A_KEY)["DEBUG"] is False


def test_debug_is_on_only_where_the_environment_turns_it_on(read_settings):
    assert read_settings(SECRET_KEY=A_KEY, DEBUG="true")["DEBUG"] is True


@pytest.mark.parametrize("debug", ["false", "true"])
def test_without_a_secret_key_the_settings_refuse_to_load(read_settings, debug):
    # With DEBUG on too: there is no development key in the code to fall back on.
    with pytest.raises(ImproperlyConfigured, match="^SECRET_KEY is not set: ") as refused:
        read_settings(DEBUG=debug)

    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_a_process_without_debug_and_secret_key_fails_naming_secret_key(manage, tmp_path):
    started = manage("migrate", "--noinput")

    last_line = started.stderr.strip().splitlines()[-1]
    assert started.returncode == 1
    assert "ImproperlyConfigured: SECRET_KEY is not set: " in last_line
    assert "make run" in last_line  # where a developer's key comes from
    assert "Traceback" not in started.stderr
    assert not (tmp_path / "var" / "crm.sqlite3").exists()  # nothing was started


def test_the_fallback_keys_of_a_rotation_come_from_the_environment(read_settings):
    rotating = read_settings(SECRET_KEY=A_KEY, SECRET_KEY_FALLBACKS="old-key-2, old-key-1")

    assert rotating["SECRET_KEY_FALLBACKS"] == ["old-key-2", "old-key-1"]
    assert read_settings(SECRET_KEY=A_KEY)["SECRET_KEY_FALLBACKS"] == []


# --- HTTPS -----------------------------------------------------------------------------------

SECURE = {
    "SECURE_SSL_REDIRECT": True,
    "SECURE_HSTS_SECONDS": 365 * 24 * 60 * 60,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
}


def secure_settings(settings):
    return {name: settings[name] for name in SECURE}


def test_with_debug_off_every_secure_setting_is_on(read_settings):
    production = read_settings(SECRET_KEY=A_KEY)

    assert secure_settings(production) == SECURE
    assert production["SECURE_PROXY_SSL_HEADER"] is None  # no proxy's header trusted unasked


def test_an_operator_turns_each_secure_setting_off(read_settings):
    behind_a_proxy_that_does_it = read_settings(
        SECRET_KEY=A_KEY,
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="0",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="off",
        SECURE_HSTS_PRELOAD="no",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="false",
    )

    assert secure_settings(behind_a_proxy_that_does_it) == dict.fromkeys(SECURE, False) | {
        "SECURE_HSTS_SECONDS": 0
    }


def test_make_runs_development_server_speaks_plain_http(read_settings):
    development = read_settings(SECRET_KEY=A_KEY, DEBUG="true")

    assert secure_settings(development) == dict.fromkeys(SECURE, False) | {"SECURE_HSTS_SECONDS": 0}


def test_the_proxys_https_header_comes_from_the_environment(read_settings):
    behind_nginx = read_settings(
        SECRET_KEY=A_KEY, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https"
    )

    assert behind_nginx["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.mark.parametrize("value", ["X-Forwarded-Proto", "https", ": https", "X-Forwarded-Proto:"])
def test_a_proxy_header_that_is_not_one_refuses_to_start_naming_the_variable(read_settings, value):
    with pytest.raises(ImproperlyConfigured, match="^SECURE_PROXY_SSL_HEADER="):
        read_settings(SECRET_KEY=A_KEY, SECURE_PROXY_SSL_HEADER=value)


@pytest.fixture
def https_on(settings):
    """Production's redirect (the suite itself speaks plain HTTP: tests/settings.py)."""
    settings.SECURE_SSL_REDIRECT = True


def test_a_plain_http_request_is_sent_to_https(client, https_on):
    answer = client.get("/admin/login/")

    assert answer.status_code == 301
    assert answer["Location"] == "https://testserver/admin/login/"


def test_behind_the_proxy_an_https_request_is_served_with_hsts(client, https_on, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    answer = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")

    assert answer.status_code == 200
    assert answer["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "Secure" in str(answer.cookies["csrftoken"])


def test_a_client_claiming_https_itself_is_still_sent_to_https(client, https_on):
    # No proxy header configured: a client's own X-Forwarded-Proto means nothing.
    answer = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")

    assert answer.status_code == 301


# --- The deployment checklist ----------------------------------------------------------------


@pytest.mark.slow
def test_check_deploy_reports_nothing_with_debug_off_a_key_and_allowed_hosts(manage):
    checked = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="crm.example.com",
    )

    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "System check identified no issues (0 silenced)."


# --- The database ------------------------------------------------------------------------------


def test_on_postgresql_queries_are_prepared_unless_turned_off(read_settings):
    url = "postgres://crm@db.example/crm"

    on = read_settings(SECRET_KEY=A_KEY, DATABASE_URL=url)["DATABASES"]["default"]["OPTIONS"]
    off = read_settings(SECRET_KEY=A_KEY, DATABASE_URL=url, DATABASE_PREPARED_STATEMENTS="false")

    assert on == {"server_side_binding": True, "prepare_threshold": 5}
    assert "prepare_threshold" not in off["DATABASES"]["default"].get("OPTIONS", {})
    sqlite = read_settings(SECRET_KEY=A_KEY)["DATABASES"]["default"]["OPTIONS"]
    assert "prepare_threshold" not in sqlite
