import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest

from crm import services as crm_services
from crm.models import Notification
from nurture import journal, outbox, sending, tasks, transport
from nurture.dispatch import dispatch_due
from nurture.models import Enrollment, MailboxLimit, OutboundMessage

MSK = ZoneInfo("Europe/Moscow")
FIRST_SEND = datetime(2025, 11, 26, 10, 0, tzinfo=MSK)  # for a lead enrolled Thu 20 Nov 19:30
State = OutboundMessage.State


@pytest.fixture
def dispatch(django_capture_on_commit_callbacks):
    """Dispatch what is due and return the created messages without sending them yet."""

    def run():
        with django_capture_on_commit_callbacks(execute=False):
            ids = dispatch_due()
        return list(OutboundMessage.objects.filter(pk__in=ids).order_by("pk"))

    return run


@pytest.fixture
def first_message(clock, nurtured_lead, dispatch):
    clock.move_to(FIRST_SEND)
    [message] = dispatch()
    return message


def reload(obj):
    obj.refresh_from_db()
    return obj


def test_sending_twice_sends_once(first_message, smtp_server):
    assert sending.send_message(first_message.pk) == "sent"
    assert sending.send_message(first_message.pk) == "already sent"

    assert len(smtp_server.handler.wait_for(1)) == 1
    assert reload(first_message).state == State.SENT


def test_a_temporary_smtp_error_is_retried_later_with_backoff(first_message, smtp_server, clock):
    smtp_server.handler.reply_to_data = ["451 4.3.0 Try again later"]

    assert sending.send_message(first_message.pk) == "retry"
    message = reload(first_message)
    assert message.state == State.RETRY
    assert message.retry_at == FIRST_SEND + timedelta(minutes=1)
    assert "451" in message.error

    assert outbox.requeue_due_retries() == []  # not yet due
    clock.move_to(FIRST_SEND + timedelta(minutes=1))
    assert sending.send_message(first_message.pk) == "sent"
    assert reload(first_message).attempts == 2
    assert len(smtp_server.handler.wait_for(1)) == 1


def test_retries_give_up_after_the_last_attempt_and_tell_the_manager(
    first_message, smtp_server, clock, settings, alice
):
    settings.NURTURE_MAX_SEND_ATTEMPTS = 2
    smtp_server.handler.reply_to_data = ["421 4.7.0 Busy"] * 2

    assert sending.send_message(first_message.pk) == "retry"
    clock.move_to(FIRST_SEND + timedelta(minutes=1))
    assert sending.send_message(first_message.pk) == "failed"

    assert reload(first_message).state == State.FAILED
    assert "could not be sent" in Notification.objects.filter(user=alice).latest("id").message
    assert smtp_server.received == []


def test_a_permanent_error_fails_the_message_and_tells_the_manager(
    first_message, smtp_server, alice
):
    smtp_server.handler.reply_to_data = ["554 5.7.1 Message rejected as spam"]

    assert sending.send_message(first_message.pk) == "failed"

    message = reload(first_message)
    assert message.state == State.FAILED
    assert "554" in message.error
    assert message.enrollment.state == Enrollment.State.ACTIVE  # the next step still comes
    assert "could not be sent" in Notification.objects.get(user=alice).message


def test_a_refused_recipient_halts_nurturing_as_a_bounce(first_message, smtp_server):
    smtp_server.handler.refuse_recipients = {"ivan@client.example"}

    assert sending.send_message(first_message.pk) == "failed"

    enrollment = reload(first_message.enrollment)
    assert enrollment.state == Enrollment.State.HALTED
    assert enrollment.halt_reason == Enrollment.HaltReason.BOUNCE


def test_a_message_for_a_lead_that_left_nurturing_is_not_sent(
    first_message, smtp_server, alice, nurtured_lead
):
    crm_services.change_status(nurtured_lead, "in_progress", by=alice)  # signal not run yet

    assert sending.send_message(first_message.pk) == "cancelled"
    assert reload(first_message).state == State.CANCELLED
    assert smtp_server.received == []


def test_a_lead_marked_do_not_email_gets_nothing(first_message, smtp_server, nurtured_lead):
    nurtured_lead.do_not_email = True
    nurtured_lead.save()

    assert sending.send_message(first_message.pk) == "cancelled"
    assert smtp_server.received == []


def assert_never_sent_again(message, clock, settings, manager):
    """After its lease, `message` (whose send may have gone) is unknown, its manager told, and
    neither the reconciler nor the retries send it again."""
    clock.move_to(FIRST_SEND + timedelta(seconds=settings.NURTURE_SEND_LEASE_SECONDS + 1))
    outbox.reconcile_expired_leases()
    outbox.requeue_due_retries()

    assert sending.send_message(message.pk) == "already unknown"
    assert reload(message).state == State.UNKNOWN
    assert "may or may not have been sent" in Notification.objects.get(user=manager).message


def test_an_email_whose_reply_was_lost_is_never_sent_again(
    first_message, smtp_server, clock, settings, alice
):
    """The server had the whole message when the connection went: it may have queued it."""
    smtp_server.handler.hang_up_after_accepting = 1

    assert sending.send_message(first_message.pk) == "error"

    assert_never_sent_again(first_message, clock, settings, alice)
    assert len(smtp_server.handler.received) == 1


@pytest.fixture
def stalling_esp(settings):
    """Postmark's API on loopback that reads every request whole and never answers it; the
    backend waits half a second for an answer."""
    received, stop = [], threading.Event()

    class Stalling(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            stop.wait(10)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "test-token",
        "POSTMARK_API_URL": f"http://127.0.0.1:{server.server_port}/",
        "REQUESTS_TIMEOUT": 0.5,
    }
    transport.connections.reset()
    yield received
    stop.set()
    server.shutdown()
    server.server_close()
    transport.connections.reset()


def test_an_email_the_esp_took_without_answering_in_time_is_never_sent_again(
    first_message, stalling_esp, clock, settings, alice
):
    assert sending.send_message(first_message.pk) == "error"

    assert_never_sent_again(first_message, clock, settings, alice)
    assert len(stalling_esp) == 1


def test_an_expired_lease_is_marked_unknown_and_never_resent(
    first_message, smtp_server, clock, settings, alice
):
    assert sending._claim([first_message.pk])[0] == {
        first_message.pk: "claimed"
    }  # the worker dies right after this
    clock.move_to(FIRST_SEND + timedelta(seconds=settings.NURTURE_SEND_LEASE_SECONDS + 1))

    assert outbox.reconcile_expired_leases() == 1
    assert sending.send_message(first_message.pk) == "already unknown"

    assert reload(first_message).state == State.UNKNOWN
    assert smtp_server.received == []
    assert "may or may not have been sent" in Notification.objects.get(user=alice).message


def test_a_journal_that_cannot_be_read_does_not_stop_the_reconciler(
    first_message, smtp_server, clock, settings, caplog, tmp_path
):
    settings.VAR_DIR = tmp_path  # the broken journal stays this test's
    sending._claim([first_message.pk])  # the worker dies right after this
    (journal.folder() / "broken.jsonl").mkdir(parents=True)  # not a file: reading it fails
    clock.move_to(FIRST_SEND + timedelta(seconds=settings.NURTURE_SEND_LEASE_SECONDS + 1))

    assert outbox.reconcile_expired_leases() == 1

    assert reload(first_message).state == State.UNKNOWN
    assert "could not be read" in caplog.text


def test_hostile_lead_data_is_escaped_in_html_and_cannot_add_headers(
    clock, make_lead, alice, smtp_server, django_capture_on_commit_callbacks, dispatch
):
    lead = make_lead(
        alice,
        first_name="<b>Eve</b>",
        title='x"><script>alert(1)</script>\r\nBcc: victim@example.com',
        email="eve@client.example",
    )
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(lead, "nurturing", by=alice)
    clock.move_to(FIRST_SEND)
    [message] = dispatch()

    sending.send_message(message.pk)

    [email] = smtp_server.handler.wait_for(1)
    assert email.rcpt_tos == ["eve@client.example"]
    assert email["Bcc"] is None
    assert "\n" not in email["Subject"]
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert "&lt;b&gt;Eve&lt;/b&gt;" in email.html


def test_a_lead_in_english_gets_the_english_texts(
    clock, make_lead, alice, smtp_server, django_capture_on_commit_callbacks, dispatch
):
    lead = make_lead(alice, first_name="John", title="Portal", language="en")
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(lead, "nurturing", by=alice)
    clock.move_to(FIRST_SEND)
    [message] = dispatch()

    sending.send_message(message.pk)

    [email] = smtp_server.handler.wait_for(1)
    assert email["Subject"] == "Project “Portal”"
    assert "Hello John," in email.text
    assert "Has a decision been made on project “Portal”?" in email.text


@pytest.fixture
def many_nurtured_leads(clock, make_lead, alice, django_capture_on_commit_callbacks):
    leads = [make_lead(alice, email=f"lead{n}@client.example") for n in range(12)]
    with django_capture_on_commit_callbacks(execute=True):
        for lead in leads:
            crm_services.change_status(lead, "nurturing", by=alice)
    return leads


def test_sends_over_the_per_minute_cap_move_to_the_next_minute(
    many_nurtured_leads, clock, dispatch
):
    clock.move_to(FIRST_SEND)

    first_minute = dispatch()
    held_back = Enrollment.objects.filter(sent_count=0)

    assert len(first_minute) == 10
    assert {e.next_send_at for e in held_back} == {FIRST_SEND + timedelta(minutes=1)}
    clock.move_to(FIRST_SEND + timedelta(minutes=1))
    assert len(dispatch()) == 2


def test_sends_over_the_daily_cap_move_to_the_next_working_day(
    many_nurtured_leads, clock, dispatch, alice
):
    MailboxLimit.objects.create(user=alice, per_minute=100, per_day=5)
    clock.move_to(FIRST_SEND)

    assert len(dispatch()) == 5

    next_day = datetime(2025, 11, 27, 10, 0, tzinfo=MSK)
    assert {e.next_send_at for e in Enrollment.objects.filter(sent_count=0)} == {next_day}
    clock.move_to(next_day)
    assert len(dispatch()) == 5


def test_a_send_whose_task_was_lost_is_published_again_and_goes_out_once(
    first_message, smtp_server, clock, eager_tasks, django_capture_on_commit_callbacks
):
    clock.move_to(FIRST_SEND + timedelta(minutes=5))
    assert outbox.requeue_lost_sends() == []  # its task may still be on its way

    clock.move_to(FIRST_SEND + timedelta(minutes=11))
    assert outbox.requeue_lost_sends() == [first_message.pk]
    assert outbox.requeue_lost_sends() == []  # published again at most every ten minutes
    with django_capture_on_commit_callbacks(execute=True):
        tasks.publish_sends([first_message.pk])  # as beat's task does with what it found

    assert len(smtp_server.handler.wait_for(1)) == 1
    assert reload(first_message).state == State.SENT
