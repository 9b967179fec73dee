"""Rate limits on the public endpoints, per client address.

The endpoints anyone on the internet can reach fall into groups, each with its own limit from
RATE_LIMITS ("<count>/<period>", e.g. "10/5m"; "off" for none):

- webhooks: /anymail/... and /telephony/events/ (the ESPs and the PBX), answered in JSON;
- unsubscribe: /nurture/unsubscribe/<token>/;
- login: /admin/login/ and /accounts/login/, where only a login that fails counts (so a whole
  office behind one address can still log in in the morning);
- password_reset: /accounts/password/reset/..., where only a POST counts (each request for a
  link sends an email, each new password is a guess at a token; the pages themselves are free).

A client that goes over gets 429 with Retry-After (seconds to the end of the window) until its
window ends. The client is `crm.client_ip.client_ip` (through TRUSTED_PROXY_COUNT proxies of our
own); an IPv6 client is its /64 network, which one machine usually has to itself. Windows are
fixed (a counter per client and period in Django's cache, with the time from `time.time()`), so
a client can get at most twice its limit through across the turn of a window. Counters in the
local-memory cache are per process: only a cache every web process shares (CACHE_URL=redis://)
makes the limit the installation's.

Every other path costs one `str.startswith`.
"""

import contextlib
import ipaddress
import logging
import math
import re
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse, JsonResponse
from django.utils.translation import ngettext

from crm.client_ip import client_ip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    name: str  # its key in RATE_LIMITS
    paths: tuple[str, ...]  # what request.path_info starts with
    answers_json: bool = False  # machines call it
    counts_failed_logins: bool = False  # only a POST not answered with a redirect counts
    counts_posts_only: bool = False


GROUPS = (
    Group("webhooks", ("/anymail/", "/telephony/events/"), answers_json=True),
    Group("unsubscribe", ("/nurture/unsubscribe/",)),
    Group("login", ("/admin/login/", "/accounts/login/"), counts_failed_logins=True),
    # Each reset sends an email: a stranger must not make the CRM mail someone a hundred times.
    Group("password_reset", ("/accounts/password/reset/",), counts_posts_only=True),
)
LIMITED_PATHS = tuple(path for group in GROUPS for path in group.paths)

PERIODS = {"s": 1, "m": 60, "h": 3600}
RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int


@lru_cache(maxsize=32)
def parse_rate(value: str, name: str = "rate") -> Rate | None:
    """The rate in a setting: 60 per 60 seconds for "60/m", 10 per 300 seconds for "10/5m"; None
    for "off" (or "0"). `name` is the variable it came from, for the error."""
    if value.strip().lower() in ("off", "0", ""):
        return None
    match = RATE.match(value)
    if not match or int(match[1]) < 1 or match[2] == "0":
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a rate: use <count>/<period>, the period in s, m or h "
            "with an optional number before it (60/m, 10/5m, 1000/h), or off"
        )
    return Rate(int(match[1]), int(match[2] or 1) * PERIODS[match[3]])


def rates() -> dict[str, Rate | None]:
    return {
        group.name: parse_rate(
            settings.RATE_LIMITS.get(group.name, "off"), f"RATE_LIMIT_{group.name.upper()}"
        )
        for group in GROUPS
    }


class RateLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        rates()  # a rate that is not one stops the process at start, naming its variable

    def __call__(self, request):
        path = request.path_info
        if not path.startswith(LIMITED_PATHS):
            return self.get_response(request)
        group = next(group for group in GROUPS if path.startswith(group.paths))
        rate = rates()[group.name]
        if rate is None or (group.counts_posts_only and request.method != "POST"):
            return self.get_response(request)
        if group.counts_failed_logins:
            return self._limit_failed_logins(request, group, rate)
        counter = Counter(group, rate, client_key(request))
        if counter.hit() > rate.count:
            return too_many_requests(group, counter)
        return self.get_response(request)

    def _limit_failed_logins(self, request, group: Group, rate: Rate):
        if request.method != "POST":
            return self.get_response(request)
        # Counted before the attempt, so that parallel attempts cannot all slip under the
        # limit; given back when the login succeeds.
        counter = Counter(group, rate, client_key(request))
        if counter.hit() > rate.count:
            return too_many_requests(group, counter)
        response = self.get_response(request)
        if response.status_code in (301, 302, 303):
            counter.give_back()
        return response


def client_key(request) -> str:
    """Whose requests these are: the client's address, or its /64 network for IPv6."""
    address = client_ip(request) or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Counter:
    """A client's requests in the current window of its group."""

    def __init__(self, group: Group, rate: Rate, client: str):
        now = time.time()
        window = int(now // rate.seconds)
        self.key = f"ratelimit:{group.name}:{client}:{rate.seconds}:{window}"
        self.seconds_left = max(1, math.ceil((window + 1) * rate.seconds - now))
        self.group, self.rate, self.client = group, rate, client

    def hit(self) -> int:
        """Count one more request; how many there have been in this window (0 when the cache
        cannot be reached: the limit is a guard, not a lock, and the endpoints go on)."""
        try:
            cache.add(self.key, 0, timeout=self.seconds_left + 1)
            try:
                count = cache.incr(self.key)
            except ValueError:  # gone between the two calls (its window just ended)
                cache.set(self.key, 1, timeout=self.seconds_left + 1)
                count = 1
        except Exception:  # noqa: BLE001 - a cache server that is down
            logger.warning("rate limit %s: no cache", self.group.name, exc_info=True)
            return 0
        if count == self.rate.count + 1:
            logger.warning(
                "rate limit %s: %s went over %d requests in %d s",
                self.group.name,
                self.client,
                self.rate.count,
                self.rate.seconds,
            )
        return count

    def give_back(self) -> None:
        # Its window may have ended (the key is gone), or the cache be down: nothing to give.
        with contextlib.suppress(Exception):
            cache.decr(self.key)


def too_many_requests(group: Group, counter: Counter) -> HttpResponse:
    seconds = counter.seconds_left
    message = ngettext(
        "Too many requests from your address: try again in %(seconds)d second.",
        "Too many requests from your address: try again in %(seconds)d seconds.",
        seconds,
    ) % {"seconds": seconds}
    if group.answers_json:
        response = JsonResponse({"error": message, "retry_after": seconds}, status=429)
    else:
        response = HttpResponse(message, content_type="text/plain; charset=utf-8", status=429)
    response["Retry-After"] = str(seconds)
    return response
