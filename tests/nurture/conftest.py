import pytest

from nurture import sending
from nurture.models import Sequence
from tests.smtp_server import RecordingHandler, SMTPServer


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
        sending.connections.drop()
        yield server
        sending.connections.drop()


@pytest.fixture
def eager_tasks(settings):
    """Celery tasks run in the calling process, as soon as the transaction commits."""
    from crm.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def default_sequence(db):
    return Sequence.objects.get(name="Дожимаем лида / Lead nurturing")


@pytest.fixture
def nurtured_lead(make_lead, alice, django_capture_on_commit_callbacks):
    """A lead of alice's, just moved to nurturing (so enrolled in the default sequence)."""
    from crm import services

    lead = make_lead(
        alice, first_name="Ivan", email="ivan@client.example", title="Shop", language="ru"
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.change_status(lead, "nurturing", by=alice)
    lead.refresh_from_db()
    return lead
