"""Settings for the CRM. Everything comes from the environment, and the defaults are production's:
DEBUG off and every secure setting on; `make run` turns on DEBUG for development."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
import dj_email_url
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from crm.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CRM_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Off unless the environment turns it on (`make run` does, from var/development.env).
DEBUG = env_bool("DEBUG", False)
# Never in the code: from the environment (`make run` writes a development one into var/).
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: give the process a long random SECRET_KEY in its environment "
        "(`make run` writes one for development into var/development.env)"
    )
# Earlier keys, still accepted for what they signed (unsubscribe links, sessions) during a
# rotation: comma-separated, newest first.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# How many proxies of our own stand in front of the app (crm/client_ip.py reads the client's
# address through them); 0: the app is reached directly.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "anymail",
    "axes",
    "csp",
    "django_htmx",
    "crm",
    "nurture",
    "telephony",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A signed-in user's own language and time zone (their profile), over the defaults.
    "crm.preferences.PreferencesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: it turns a login refused by the lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "crm.urls"
WSGI_APPLICATION = "crm.wsgi.application"
ASGI_APPLICATION = "crm.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "crm.context_processors.workspace",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'crm.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: wait for locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_PREPARED_STATEMENTS", True
):
    # Parameters bound by the server, and after five runs on one connection a query is prepared:
    # PostgreSQL then plans it once, not on every page (planning was half the server's time
    # on a lead card). It pays with kept connections (DATABASE_CONN_MAX_AGE); behind a
    # transaction-mode pooler that cannot keep prepared statements, turn it off.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"server_side_binding": True, "prepare_threshold": 5}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # First: a locked-out login is refused before its password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "crm.auth.ModelBackendWithProfile",  # Django's ModelBackend, the profile read with the user
]
# Login lockout (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one user from one
# address, that user cannot log in from there for LOGIN_LOCKOUT_MINUTES (0: until an admin lifts
# it, in the admin under Axes > Access attempts or with `manage.py axes_reset_username`). Other
# users, and the same user elsewhere, are not locked out: a stranger cannot lock out the team.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "crm.client_ip.client_ip"
_lockout_minutes = env_int("LOGIN_LOCKOUT_MINUTES", 30)
AXES_COOLOFF_TIME = timedelta(minutes=_lockout_minutes) if _lockout_minutes > 0 else None
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "crm.lockout.locked_out"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = env_str("LANGUAGE_CODE", "ru")
LANGUAGES = [("ru", _("Russian")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "Europe/Moscow")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))

# The workspace's own sign-in page; the admin keeps its own for admin pages.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "crm:today"
LOGOUT_REDIRECT_URL = "login"

# Phone numbers typed without a country code are read in this region.
PHONE_DEFAULT_REGION = env_str("PHONE_DEFAULT_REGION", "RU")

# Celery: the default broker is a folder under var/ (crm/broker.py), which needs no server.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "crmfs://")
if CELERY_BROKER_URL.startswith(("crmfs://", "filesystem://")):
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "processed_folder": str(BROKER_DIR),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # With the broker down, publishing gives up after a few quick tries (the sends are then
    # marked to be published again at the next beat tick) instead of waiting for it forever.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 1,
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Beat's tasks have a queue of their own, so the every-minute tick (which also settles expired
# leases) never waits behind thousands of send tasks; a worker consumes both unless told
# otherwise with -Q.
CELERY_TASK_QUEUES = {
    "celery": {"exchange": "celery", "routing_key": "celery"},
    "beat": {"exchange": "beat", "routing_key": "beat"},
}
CELERY_TASK_ROUTES = {
    "nurture.tasks.dispatch_due": {"queue": "beat"},
    "celery.backend_cleanup": {"queue": "beat"},
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Mail: SMTP by default (EMAIL_URL or the usual EMAIL_* variables); any Anymail ESP by setting
# EMAIL_BACKEND to its backend and ANYMAIL_* to its credentials. While developing (DEBUG on) with
# none of EMAIL_URL, EMAIL_BACKEND, EMAIL_HOST or EMAIL_PORT set, nothing is sent: every email is
# written to a file in EMAIL_FILE_PATH (crm/dev_mail.py) and staff read them at /dev/mail/.
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
_MAIL_SERVER_GIVEN = any(
    env_str(name) for name in ("EMAIL_URL", "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT")
)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
if DEBUG and not _MAIL_SERVER_GIVEN:
    EMAIL_BACKEND = "crm.dev_mail.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if env_str("EMAIL_URL"):
    _email = dj_email_url.parse(env_str("EMAIL_URL"))
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST, EMAIL_PORT = _email["EMAIL_HOST"], _email["EMAIL_PORT"]
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_USER"], _email["EMAIL_HOST_PASSWORD"]
    EMAIL_USE_TLS, EMAIL_USE_SSL = _email["EMAIL_USE_TLS"], _email["EMAIL_USE_SSL"]
    if _email["EMAIL_BACKEND"].endswith(".filebased.EmailBackend") and _email["EMAIL_FILE_PATH"]:
        EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]  # file://… (relative to the working folder)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "crm@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# /healthz for monitoring (nurture/health.py): what counts as wrong. Anyone may ask unless
# HEALTHZ_TOKEN is set; the answer names the checks and nothing else, and is kept a few seconds.
HEALTHZ_TOKEN = env_str("HEALTHZ_TOKEN")
HEALTHZ_BROKER_TIMEOUT = env_int("HEALTHZ_BROKER_TIMEOUT", 3)  # seconds to reach the broker
HEALTHZ_BEAT_MINUTES = env_int("HEALTHZ_BEAT_MINUTES", 10)  # beat ran the dispatcher since
HEALTHZ_SEND_DELAY_MINUTES = env_int("HEALTHZ_SEND_DELAY_MINUTES", 10)  # due, not yet sent
HEALTHZ_UNKNOWN_MINUTES = env_int("HEALTHZ_UNKNOWN_MINUTES", 60)  # an email went unknown; 0: off
HEALTHZ_CACHE_SECONDS = env_int("HEALTHZ_CACHE_SECONDS", 10)
# A monitor that asks the app server directly over plain HTTP gets the answer, not a redirect
# (which many monitors count as up).
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Anymail's webhooks (tracking and inbound) are protected by HTTP basic auth "user:password";
# several comma-separated values are accepted during a rotation.
# Every other ANYMAIL_<NAME> variable becomes ANYMAIL["<NAME>"], e.g. ANYMAIL_MAILGUN_API_KEY.
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): value
    for name, value in os.environ.items()
    if name.startswith("ANYMAIL_") and name != "ANYMAIL_WEBHOOK_SECRET"
}
if env_str("ANYMAIL_WEBHOOK_SECRET"):
    ANYMAIL["WEBHOOK_SECRET"] = env_list("ANYMAIL_WEBHOOK_SECRET")


def _proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """The header a TLS-terminating proxy sets on HTTPS requests, "X-Forwarded-Proto: https",
    as Django wants it: ("HTTP_X_FORWARDED_PROTO", "https")."""
    value = env_str(name).strip()
    if not value:
        return None
    header, colon, expected = (part.strip() for part in value.partition(":"))
    if not (header and colon and expected):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a header and its value, e.g. 'X-Forwarded-Proto: https'"
        )
    return "HTTP_" + header.upper().replace("-", "_"), expected


# HTTPS: with DEBUG off every secure setting is on; each can be turned off (behind a proxy that
# redirects to HTTPS and sends HSTS itself, say). Trust a proxy's header only when it is set.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 60 * 60)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_PROXY_SSL_HEADER = _proxy_ssl_header("SECURE_PROXY_SSL_HEADER")

# Content-Security-Policy on every page (django-csp): scripts only from our own static files or
# with the page's nonce; inline styles stay allowed (Django's admin and the emails shown in the
# outbox's sandboxed frames use them); no plugins, no framing by other sites.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # The login lockout logs each failed login and each lockout (warnings), not every login.
    "loggers": {"axes": {"level": "WARNING"}},
}

# Nurturing: the working-day calendar and the sending window (company time zone by default).
NURTURE_CALENDAR_COUNTRY = env_str("NURTURE_CALENDAR_COUNTRY", "RU")
NURTURE_CALENDAR_SUBDIVISION = env_str("NURTURE_CALENDAR_SUBDIVISION") or None
NURTURE_WEEKEND_DAYS = [int(day) for day in env_list("NURTURE_WEEKEND_DAYS", "5,6")]  # Mon=0
# Each manager's mailbox: sends over a cap wait for the next free slot (editable per manager).
NURTURE_MAILBOX_PER_MINUTE = env_int("NURTURE_MAILBOX_PER_MINUTE", 10)
NURTURE_MAILBOX_PER_DAY = env_int("NURTURE_MAILBOX_PER_DAY", 200)
# How many messages one send task takes: claimed together, sent over one connection, recorded
# together (its leads stay locked about a second at a time while it sends).
NURTURE_SEND_BATCH = env_int("NURTURE_SEND_BATCH", 100)
# How many connections to the mail server each worker process sends a batch over at once.
NURTURE_SEND_CONNECTIONS = env_int("NURTURE_SEND_CONNECTIONS", 1)
# How long a worker may take over one send task before its unsent messages count as "unknown".
NURTURE_SEND_LEASE_SECONDS = env_int("NURTURE_SEND_LEASE_SECONDS", 600)
# A queued message whose task was published this long ago, with the send queue empty, has lost
# its task (the broker lost it, or a worker died holding it): beat publishes it again.
NURTURE_LOST_TASK_SECONDS = env_int("NURTURE_LOST_TASK_SECONDS", 30)
NURTURE_MAX_SEND_ATTEMPTS = env_int("NURTURE_MAX_SEND_ATTEMPTS", 5)
# The domain in our Message-IDs; replies quote it in In-Reply-To.
NURTURE_MESSAGE_ID_DOMAIN = env_str("NURTURE_MESSAGE_ID_DOMAIN", "crm.localhost")

# Telephony: the generic webhook's shared secrets (comma-separated: two during a rotation).
TELEPHONY_WEBHOOK_SECRETS = env_list("TELEPHONY_WEBHOOK_SECRETS")
TELEPHONY_WEBHOOK_MAX_AGE = env_int("TELEPHONY_WEBHOOK_MAX_AGE", 300)  # seconds
# Asterisk Manager Interface, for `manage.py ami_listen`, click-to-call and call control.
TELEPHONY_AMI_HOST = env_str("TELEPHONY_AMI_HOST")
TELEPHONY_AMI_PORT = env_int("TELEPHONY_AMI_PORT", 5038)
TELEPHONY_AMI_USERNAME = env_str("TELEPHONY_AMI_USERNAME")
TELEPHONY_AMI_SECRET = env_str("TELEPHONY_AMI_SECRET")
TELEPHONY_AMI_CONTEXT = env_str("TELEPHONY_AMI_CONTEXT", "from-internal")
TELEPHONY_AMI_CHANNEL_TECH = env_str("TELEPHONY_AMI_CHANNEL_TECH", "PJSIP")
# Dialplan contexts the Asterisk admin adds for hold and conference (README "Calls"); empty:
# that control is off, shown disabled with the reason.
TELEPHONY_AMI_HOLD_CONTEXT = env_str("TELEPHONY_AMI_HOLD_CONTEXT")
TELEPHONY_AMI_CONFERENCE_CONTEXT = env_str("TELEPHONY_AMI_CONFERENCE_CONTEXT")
# Cloud PBXs without AMI: click-to-call POSTs JSON {"extension", "number", "lead_id"} here.
TELEPHONY_CLICK_TO_CALL_URL = env_str("TELEPHONY_CLICK_TO_CALL_URL")
TELEPHONY_CLICK_TO_CALL_TOKEN = env_str("TELEPHONY_CLICK_TO_CALL_TOKEN")

# Incoming mail by IMAP polling (`manage.py fetch_mail`).
MAIL_IMAP_HOST = env_str("MAIL_IMAP_HOST")
MAIL_IMAP_PORT = env_int("MAIL_IMAP_PORT", 993)
MAIL_IMAP_SSL = env_bool("MAIL_IMAP_SSL", True)
MAIL_IMAP_USER = env_str("MAIL_IMAP_USER")
MAIL_IMAP_PASSWORD = env_str("MAIL_IMAP_PASSWORD")
MAIL_IMAP_FOLDER = env_str("MAIL_IMAP_FOLDER", "INBOX")

# --- ESP webhooks and rate limits (telephony/mail/esp_webhooks.py, crm/ratelimit.py) -----------
# The ESPs whose Anymail webhooks answer, named as in their URLs (/anymail/<esp>/inbound/ and
# /tracking/): comma-separated, e.g. "postmark,mailgun"; none by default. Any other /anymail/
# path is a 404, and a listed ESP without ANYMAIL_WEBHOOK_SECRET (or, for an ESP that signs its
# posts, its signing key) refuses every request (`manage.py check` says what to set).
ANYMAIL_WEBHOOK_ESPS = [esp.lower() for esp in env_list("ANYMAIL_WEBHOOK_ESPS")]
ANYMAIL.pop("WEBHOOK_ESPS", None)  # ours, not one of Anymail's settings
# Requests per client address on the public endpoints, "<count>/<period>" with the period in s,
# m or h (10/5m: ten per five minutes), or "off". A login counts only when it fails.
RATE_LIMITS = {
    "webhooks": env_str("RATE_LIMIT_WEBHOOKS", "1200/m"),
    "unsubscribe": env_str("RATE_LIMIT_UNSUBSCRIBE", "60/m"),
    "login": env_str("RATE_LIMIT_LOGIN", "20/5m"),
    "password_reset": env_str("RATE_LIMIT_PASSWORD_RESET", "10/h"),
}
# Django's cache, which keeps the rate limits' counters: this process's memory by default (each
# web process counts on its own); CACHE_URL=redis://host:6379/1 shares one between them.
CACHE_URL = env_str("CACHE_URL").strip()
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    }
elif CACHE_URL in ("", "locmem://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured(f"CACHE_URL={CACHE_URL!r}: use locmem:// or a redis:// URL")
# Early, so that a refused request costs little; after LocaleMiddleware, so it is answered in
# the client's language.
_after = "django.middleware.locale.LocaleMiddleware"
MIDDLEWARE.insert(
    MIDDLEWARE.index(_after) + 1 if _after in MIDDLEWARE else 0, "crm.ratelimit.RateLimitMiddleware"
)
