"""Rate limits on the public endpoints: per client address (the real one behind our proxies), a
clear 429 with Retry-After, counted on the clock time-machine moves, and nothing else counted."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from crm.ratelimit import Rate, parse_rate
from tests.services import REDIS_URL, require_service

PROJECT = Path(__file__).resolve().parents[2]
CLIENT = "203.0.113.9"
OTHER_CLIENT = "198.51.100.4"


@pytest.fixture
def limits(settings):
    """Tight limits, so a test reaches them in a few requests."""
    settings.RATE_LIMITS = {"webhooks": "3/m", "unsubscribe": "2/m", "login": "2/5m"}
    return settings.RATE_LIMITS


def post_event(client, address=CLIENT, **headers):
    return client.post(
        "/telephony/events/", b"{}", content_type="application/json", REMOTE_ADDR=address, **headers
    )


# --- Webhooks -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_client_over_the_webhook_limit_gets_a_429_in_json_until_the_minute_ends(
    client, limits, clock
):
    answered = [post_event(client).status_code for _ in range(3)]
    refused = post_event(client)

    assert 429 not in answered
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"  # the clock stands at the start of a minute
    assert refused.json()["retry_after"] == 60
    assert "Too many requests" in refused.json()["error"]

    clock.shift(timedelta(seconds=45))
    assert post_event(client)["Retry-After"] == "15"

    clock.shift(timedelta(seconds=15))
    assert post_event(client).status_code != 429


@pytest.mark.django_db
def test_another_client_is_not_held_back_by_the_first(client, limits, clock):
    for _ in range(4):
        post_event(client)

    assert post_event(client).status_code == 429
    assert post_event(client, address=OTHER_CLIENT).status_code != 429


@pytest.mark.django_db
def test_the_esp_webhooks_share_the_webhook_limit(client, limits, clock):
    for _ in range(3):
        post_event(client)

    response = client.post(
        "/anymail/postmark/inbound/", b"{}", content_type="application/json", REMOTE_ADDR=CLIENT
    )

    assert response.status_code == 429


@pytest.mark.django_db
def test_behind_our_proxy_each_client_is_counted_by_its_own_address(
    client, settings, limits, clock
):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.1"

    for _ in range(3):
        post_event(client, address=proxy, HTTP_X_FORWARDED_FOR=CLIENT)
    # A client that writes its own X-Forwarded-For is still itself: the proxy appends it.
    forged = post_event(client, address=proxy, HTTP_X_FORWARDED_FOR=f"192.0.2.1, {CLIENT}")
    other = post_event(client, address=proxy, HTTP_X_FORWARDED_FOR=OTHER_CLIENT)

    assert forged.status_code == 429
    assert other.status_code != 429


@pytest.mark.django_db
def test_an_ipv6_client_is_its_whole_64_network(client, limits, clock):
    for host in range(1, 4):
        post_event(client, address=f"2001:db8:1:2::{host}")

    assert post_event(client, address="2001:db8:1:2:ffff::9").status_code == 429
    assert post_event(client, address="2001:db8:1:3::1").status_code != 429


@pytest.mark.django_db
def test_a_limit_that_is_off_counts_nothing(client, settings, clock):
    settings.RATE_LIMITS = {"webhooks": "off", "unsubscribe": "2/m", "login": "2/5m"}

    assert 429 not in [post_event(client).status_code for _ in range(20)]


# --- Unsubscribe and login: people get plain text ----------------------------------------


@pytest.mark.django_db
def test_the_unsubscribe_page_is_limited_in_plain_text(client, limits, clock):
    url = "/nurture/unsubscribe/1:AbCdEf/"
    answered = [client.get(url, REMOTE_ADDR=CLIENT).status_code for _ in range(2)]

    refused = client.post(url, REMOTE_ADDR=CLIENT)

    assert answered == [404, 404]
    assert refused.status_code == 429
    assert refused["Content-Type"].startswith("text/plain")
    assert refused["Retry-After"] == "60"
    assert "try again in 60 seconds" in refused.content.decode()


@pytest.mark.django_db
def test_only_requests_for_a_reset_link_count_not_the_pages_around_them(client, settings, clock):
    settings.RATE_LIMITS = {"password_reset": "2/h"}
    url = "/accounts/password/reset/"
    pages = [client.get(url, REMOTE_ADDR=CLIENT).status_code for _ in range(5)]
    pages.append(client.get(f"{url}sent/", REMOTE_ADDR=CLIENT).status_code)

    asked = [
        client.post(url, {"email": "a@example.com"}, REMOTE_ADDR=CLIENT).status_code
        for _ in range(3)
    ]

    assert pages == [200] * 6
    assert asked == [302, 302, 429]


def log_in(client, username, password, address=CLIENT):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


@pytest.mark.django_db
def test_failed_logins_over_the_limit_are_refused_even_with_the_right_password(
    limits, clock, alice, bob
):
    client = Client()
    failures = [log_in(client, name, "wrong").status_code for name in ("alice", "bob")]

    refused = log_in(client, "alice", "pw")

    assert failures == [200, 200]  # the form again, with its error
    assert refused.status_code == 429
    assert refused["Retry-After"] == str(5 * 60)
    assert "_auth_user_id" not in client.session

    clock.shift(timedelta(minutes=5))
    assert log_in(client, "alice", "pw").status_code == 302


@pytest.mark.django_db
def test_logins_that_succeed_do_not_count(limits, clock, alice):
    """A whole office behind one address logs in in the morning."""
    for _ in range(5):
        assert log_in(Client(), "alice", "pw").status_code == 302


@pytest.mark.django_db
def test_the_login_form_itself_is_never_limited(client, limits, clock, alice):
    for name in ("alice", "bob", "carol"):
        log_in(client, name, "wrong")

    assert client.get("/admin/login/", REMOTE_ADDR=CLIENT).status_code == 200


@pytest.mark.django_db
def test_ordinary_pages_are_not_counted(limits, clock, alice):
    client = Client()
    client.force_login(alice)

    statuses = {client.get("/admin/", REMOTE_ADDR=CLIENT).status_code for _ in range(10)}

    assert statuses == {200}


# --- Settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rate"),
    [
        ("60/m", Rate(60, 60)),
        ("10/5m", Rate(10, 300)),
        (" 1000 / h ", Rate(1000, 3600)),
        ("5/30s", Rate(5, 30)),
        ("off", None),
        ("0", None),
    ],
)
def test_a_rate_reads_as_count_per_period(value, rate):
    assert parse_rate(value) == rate


@pytest.mark.parametrize("value", ["60", "60/min", "0/m", "10/0m", "ten/m", "-1/m"])
def test_a_rate_that_is_not_one_names_its_variable(value):
    with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_LOGIN"):
        parse_rate(value, "RATE_LIMIT_LOGIN")


# --- A cache every web process shares ----------------------------------------------------


def settings_in_a_fresh_process(cache_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import crm.settings as s; print(s.CACHES['default']['BACKEND'])"],
        cwd=PROJECT,
        env={**os.environ, "CACHE_URL": cache_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cache_url", "backend"),
    [("", "LocMemCache"), ("locmem://", "LocMemCache"), ("redis://cache:6379/1", "RedisCache")],
)
def test_cache_url_chooses_the_cache(cache_url, backend):
    process = settings_in_a_fresh_process(cache_url)

    assert process.returncode == 0, process.stderr
    assert process.stdout.strip().endswith(backend)


@pytest.mark.slow
def test_a_cache_url_that_is_not_one_stops_the_process():
    process = settings_in_a_fresh_process("memcached://cache:11211")

    assert process.returncode != 0
    assert "CACHE_URL='memcached://cache:11211'" in process.stderr


@pytest.mark.redis
@pytest.mark.django_db
def test_with_a_redis_cache_the_counters_live_where_every_server_counts(limits, clock):
    url = urlsplit(REDIS_URL)
    require_service("Redis", url.hostname or "127.0.0.1", url.port or 6379)
    prefix = f"crm-test-{uuid.uuid4().hex}"
    shared = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    try:
        with override_settings(CACHES=shared):
            first_server, second_server = Client(), Client()  # each its own middleware
            for _ in range(2):
                post_event(first_server)
            post_event(second_server)

            assert post_event(first_server).status_code == 429
            assert post_event(second_server).status_code == 429
            assert list(redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{prefix}:*"))
    finally:
        redis_client = redis.Redis.from_url(REDIS_URL)
        keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
        if keys:
            redis_client.delete(*keys)
        redis_client.close()
