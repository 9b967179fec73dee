import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import Group

from crm.models import Lead, LeadStatus, Profile
from nurture import transport
from tests.services import require_service
from tests.smtp_server import RecordingHandler, SMTPServer


def pytest_report_header(config):
    db = settings.DATABASES["default"]
    return [
        f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or db['NAME']}",
        f"files written by the tests: {settings.VAR_DIR}",
    ]


def pytest_unconfigure(config):
    """The suite's own var folder (tests/settings.py) goes when the run ends."""
    if Path(settings.VAR_DIR).name.startswith("crm-tests-"):
        shutil.rmtree(settings.VAR_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Before the test database is created: is its server there at all?"""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        require_service("PostgreSQL", db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))


@pytest.fixture(autouse=True)
def _test_settings(settings):
    """Messages in English (Russian is tested where it matters) and a fast password hasher."""
    from django.utils import translation

    settings.LANGUAGE_CODE = "en"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Every test starts with an empty cache: no rate-limit counts left by another test."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def make_user(db, django_user_model):
    def make(username, group=None, *, extension="", **fields):
        user = django_user_model.objects.create_user(
            username,
            email=f"{username}@crm.example",
            password="pw",
            first_name=username.title(),
            is_staff=True,
            **fields,
        )
        if group:
            user.groups.add(Group.objects.get(name=group))
        Profile.objects.create(
            user=user,
            display_name=f"{username.title()} Manager",
            signature=f"Best regards,\n{username.title()}",
            extension=extension,
        )
        return user

    return make


@pytest.fixture
def alice(make_user):
    """Alice is a manager: she sees her own leads."""
    return make_user("alice", "Managers", extension="201")


@pytest.fixture
def alices_client(client, alice):
    """The test client, signed in as alice."""
    client.force_login(alice)
    return client


@pytest.fixture
def bob(make_user):
    """Bob is another manager."""
    return make_user("bob", "Managers", extension="202")


@pytest.fixture
def olga(make_user):
    """Olga is a supervisor: she sees everything."""
    return make_user("olga", "Supervisors")


@pytest.fixture
def status(db):
    def get(code):
        return LeadStatus.objects.get(code=code)

    return get


@pytest.fixture
def make_lead(db, status):
    from crm import services

    def make(responsible=None, status_code="new", **fields):
        fields.setdefault("title", "Website redesign")
        fields.setdefault("first_name", "Ivan")
        fields.setdefault("last_name", "Petrov")
        fields.setdefault("email", "ivan@example.com")
        lead = Lead(status=status(status_code), responsible=responsible, **fields)
        return services.create_lead(lead, by=responsible)

    return make


MSK = ZoneInfo("Europe/Moscow")


@pytest.fixture
def clock_start():
    """Where `clock` starts: Thursday 20 November 2025, 19:30 in Moscow (after the sending
    window). A test module that needs another moment overrides this fixture."""
    return datetime(2025, 11, 20, 19, 30, tzinfo=MSK)


@pytest.fixture
def clock(clock_start):
    """Time standing still at `clock_start` (in every thread); move it with clock.move_to()."""
    with time_machine.travel(clock_start, tick=False) as traveller:
        yield traveller


@pytest.fixture
def nurtured_lead(make_lead, alice, django_capture_on_commit_callbacks):
    """Ivan, a lead of alice's who writes in Russian, just moved to nurturing (so enrolled in
    the default sequence)."""
    from crm import services

    lead = make_lead(
        alice, first_name="Ivan", email="ivan@client.example", title="Shop", language="ru"
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.change_status(lead, "nurturing", by=alice)
    lead.refresh_from_db()
    return lead


@pytest.fixture
def smtp_handler():
    """What the SMTP server does with mail; a test module may override it."""
    return RecordingHandler()


@pytest.fixture
def smtp_server(settings, smtp_handler):
    """A real SMTP server on loopback; Django's SMTP backend is pointed at it."""
    with SMTPServer(smtp_handler) as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_TIMEOUT = 10
        transport.connections.reset()
        yield server
        transport.connections.reset()


@pytest.fixture
def eager_tasks(settings):
    """Celery tasks run in the calling process, as soon as the transaction commits."""
    from crm.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False
