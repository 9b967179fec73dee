"""GET /healthz, for monitoring: can this installation send its emails on time?

Five checks, each ok or failing: the database answers; the broker takes a connection (the
embedded crmfs:// broker: its folders are writable); beat has started the dispatcher lately; no
email waits long past its time (queued, or awaiting a retry whose time has come); no email ended
"unknown" lately. 200 when all are ok, 503 when one fails. The body names each check and says
what ok means, with the thresholds from settings (HEALTHZ_*), and nothing else: no host names,
no error texts, no counts. What went wrong is logged.

Cheap whatever the request rate: each database check reads a few pages of a small index (the
partial indexes of nurture/models.py; beat's task table has a handful of rows), the broker gets
one connection, and the results are kept HEALTHZ_CACHE_SECONDS in Django's cache, so a flood of
requests costs one round of checks per process every few seconds. It is not rate-limited, so a
monitor behind a shared address is never refused. With HEALTHZ_TOKEN set, a request must carry
it (`Authorization: Bearer <token>`, or `?token=` for monitors that cannot send headers).
"""

import hmac
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Max
from django.db.models.functions import Coalesce
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_celery_beat.models import PeriodicTask

from crm.celery import app as celery_app
from nurture.models import OutboundMessage

logger = logging.getLogger(__name__)

DISPATCH_TASK = "nurture.tasks.dispatch_due"
CACHE_KEY = "nurture:healthz"
FOLDER_BROKERS = ("crmfs://", "filesystem://")


def database_ok(connection=None) -> bool:
    connection = connection or connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0] == 1


def broker_ok(app=None) -> bool:
    """A server broker takes a connection within HEALTHZ_BROKER_TIMEOUT; the embedded one, a
    folder the workers share, needs its folders writable."""
    app = app or celery_app
    if str(app.conf.broker_url or "").startswith(FOLDER_BROKERS):
        options = app.conf.broker_transport_options or {}
        # Where the tasks go (the control folder appears only when a worker uses it).
        for folder in {options.get("data_folder_in"), options.get("data_folder_out")} - {None}:
            with tempfile.TemporaryFile(dir=folder):  # no name a reader would pick up
                pass
        return True
    with app.connection_for_write(connect_timeout=settings.HEALTHZ_BROKER_TIMEOUT) as connection:
        connection.ensure_connection(max_retries=0, timeout=settings.HEALTHZ_BROKER_TIMEOUT)
    return True


def beat_ok(now: datetime) -> bool:
    """Beat started the dispatcher (whichever queue it goes to) within HEALTHZ_BEAT_MINUTES, or
    the dispatcher's entry was created or changed since (a new installation, an admin's edit).

    django-celery-beat writes a task's last_run_at when beat saves its schedule: every 3
    minutes (every CELERY_BEAT_SYNC_EVERY tasks, if set) and when it stops, so the time read
    here may lag by that much."""
    last = PeriodicTask.objects.filter(task=DISPATCH_TASK, enabled=True).aggregate(
        last=Max(Coalesce("last_run_at", "date_changed"))
    )["last"]
    return last is not None and now - last <= timedelta(minutes=settings.HEALTHZ_BEAT_MINUTES)


def sends_on_time(now: datetime) -> bool:
    """No email is queued, or awaiting a retry that is due, for more than
    HEALTHZ_SEND_DELAY_MINUTES (a queued email is dispatched when it is due)."""
    late = now - timedelta(minutes=settings.HEALTHZ_SEND_DELAY_MINUTES)
    State = OutboundMessage.State
    queued = OutboundMessage.objects.filter(state=State.QUEUED, created_at__lt=late)
    retries = OutboundMessage.objects.filter(state=State.RETRY, retry_at__lt=late)
    return not queued.exists() and not retries.exists()


def no_recent_unknown(now: datetime) -> bool:
    """No email's lease expired (so that it became "unknown": it may or may not have gone out)
    within the last HEALTHZ_UNKNOWN_MINUTES; 0 turns the check off."""
    minutes = settings.HEALTHZ_UNKNOWN_MINUTES
    if minutes <= 0:
        return True
    return not OutboundMessage.objects.filter(
        state=OutboundMessage.State.UNKNOWN,
        lease_expires_at__gte=now - timedelta(minutes=minutes),
    ).exists()


def _minutes(count: int) -> str:
    return ngettext("%(count)d minute", "%(count)d minutes", count) % {"count": count}


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[datetime], bool]
    meaning: Callable[[], str]  # what ok means, in the request's language
    reads_database: bool = True


CHECKS = (
    Check(
        "database",
        lambda now: database_ok(),
        lambda: gettext("The database answers."),
        reads_database=False,
    ),
    Check(
        "broker",
        lambda now: broker_ok(),
        lambda: (
            ngettext(
                "The task broker takes a connection within %(count)d second.",
                "The task broker takes a connection within %(count)d seconds.",
                settings.HEALTHZ_BROKER_TIMEOUT,
            )
            % {"count": settings.HEALTHZ_BROKER_TIMEOUT}
        ),
        reads_database=False,
    ),
    Check(
        "beat",
        beat_ok,
        lambda: (
            gettext("Celery beat started the email dispatcher within the last %(time)s.")
            % {"time": _minutes(settings.HEALTHZ_BEAT_MINUTES)}
        ),
    ),
    Check(
        "sending",
        sends_on_time,
        lambda: (
            gettext(
                "No email is queued, or waiting for a retry that is due, for more than %(time)s."
            )
            % {"time": _minutes(settings.HEALTHZ_SEND_DELAY_MINUTES)}
        ),
    ),
    Check(
        "unknown",
        no_recent_unknown,
        lambda: (
            gettext(
                "No email became 'unknown' (may or may not have been sent: a sender stopped "
                "mid-send) within the last %(time)s."
            )
            % {"time": _minutes(settings.HEALTHZ_UNKNOWN_MINUTES)}
        ),
    ),
)


def run_checks(now: datetime | None = None) -> dict[str, bool]:
    """Each check's result; a check that raises fails, and what it raised is logged. With the
    database down, the checks that read it fail without trying (each would wait for it)."""
    now = now or timezone.now()
    results = {}
    for check in CHECKS:
        if check.reads_database and not results.get("database", True):
            results[check.name] = False
            continue
        try:
            results[check.name] = bool(check.run(now))
        except Exception:  # noqa: BLE001 - whatever broke, the check fails; the log says why
            logger.warning("Health check %s failed", check.name, exc_info=True)
            results[check.name] = False
    return results


def _refusal(request) -> HttpResponse | None:
    expected = settings.HEALTHZ_TOKEN
    if not expected:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = request.GET.get("token", "")
    if not given:
        return JsonResponse({"error": gettext("A token is required.")}, status=401)
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return JsonResponse({"error": gettext("The token is wrong.")}, status=403)
    return None


@never_cache
@require_safe
def healthz(request):
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    results = cache.get(CACHE_KEY)
    if results is None:
        results = run_checks()
        cache.set(CACHE_KEY, results, settings.HEALTHZ_CACHE_SECONDS)
    ok = all(results.values())
    body = {
        "status": "ok" if ok else "failing",
        "checks": {
            check.name: {
                "status": "ok" if results.get(check.name) else "failing",
                "meaning": check.meaning(),
            }
            for check in CHECKS
        },
    }
    return JsonResponse(body, status=200 if ok else 503, json_dumps_params={"ensure_ascii": False})
