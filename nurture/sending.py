"""Sending one outbound message, exactly once or not at all."""

import logging
import smtplib
import socket
import threading
import time as clock
from datetime import timedelta
from email.utils import make_msgid

from anymail.exceptions import AnymailError, AnymailRecipientsRefused, AnymailRequestsAPIError
from django.conf import settings
from django.core.mail import get_connection
from django.db import transaction
from django.template import TemplateSyntaxError
from django.utils import timezone
from django.utils.translation import gettext_noop

from crm.models import Activity, Lead
from crm.services import record_activity
from nurture import rendering
from nurture.models import Enrollment, OutboundMessage
from nurture.services import _complete_if_last, halt, tell_manager

logger = logging.getLogger(__name__)
State = OutboundMessage.State


class TransientError(Exception):
    """Worth trying again later."""


class PermanentError(Exception):
    """Will fail the same way every time."""

    def __init__(self, text, *, recipient_refused=False):
        super().__init__(text)
        self.recipient_refused = recipient_refused


def classify(error: Exception) -> Exception:
    """Sort an exception from an email backend into transient or permanent."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        if all(400 <= code < 500 for code in codes):
            return TransientError(str(error))
        return PermanentError(str(error), recipient_refused=True)
    if isinstance(error, smtplib.SMTPResponseException):
        if 400 <= error.smtp_code < 500:
            return TransientError(f"{error.smtp_code} {error.smtp_error!r}")
        return PermanentError(f"{error.smtp_code} {error.smtp_error!r}")
    if isinstance(error, smtplib.SMTPServerDisconnected | socket.timeout | ConnectionError):
        return TransientError(str(error) or type(error).__name__)
    if isinstance(error, AnymailRecipientsRefused):
        return PermanentError(str(error), recipient_refused=True)
    if isinstance(error, AnymailRequestsAPIError):
        status = error.status_code or 0
        if status >= 500 or status == 429 or status == 0:
            return TransientError(str(error))
        return PermanentError(str(error))
    if isinstance(error, AnymailError):
        return PermanentError(str(error))
    if isinstance(error, OSError):
        return TransientError(str(error))
    return error


class ConnectionCache(threading.local):
    """One email-backend connection per worker process (per thread, for a threads pool),
    reused across sends."""

    idle_check_after = 30  # seconds; an SMTP server may drop an idle connection

    def __init__(self):
        self.connection = None
        self.last_used = 0.0

    def get(self):
        idle = clock.monotonic() - self.last_used
        if self.connection is not None and idle > self.idle_check_after and not self._alive():
            self.drop()
        if self.connection is None:
            self.connection = get_connection()
            self.connection.open()
        self.last_used = clock.monotonic()
        return self.connection

    def _alive(self) -> bool:
        smtp = getattr(self.connection, "connection", None)
        if smtp is None:
            return True
        try:
            return smtp.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def drop(self):
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone
                logger.debug("closing a broken email connection failed", exc_info=True)
        self.connection = None


connections = ConnectionCache()


def why_not_send(message: OutboundMessage, lead: Lead, enrollment: Enrollment) -> str:
    """Empty when the message may go out now; otherwise why not."""
    if enrollment.state != Enrollment.State.ACTIVE:
        return f"enrollment {enrollment.state}"
    if lead.status_id != enrollment.sequence.enrolling_status_id:
        return "lead left the enrolling status"
    if lead.do_not_email:
        return "lead is marked do-not-email"
    if not lead.email:
        return "lead has no email address"
    return ""


def send_message(message_id: int) -> str:
    """Send message `message_id` if it is still wanted; return what happened.

    Safe to call twice or concurrently: only the call that moves the row from queued (or due
    retry) to sending goes on, and the lease it takes is committed before any SMTP traffic.
    """
    claimed = _claim(message_id)
    if claimed != "claimed":
        return claimed
    return _deliver(message_id)


@transaction.atomic
def _claim(message_id: int) -> str:
    now = timezone.now()
    message = (
        OutboundMessage.objects.select_for_update(of=("self",))
        .select_related("enrollment__sequence", "enrollment__lead", "sender")
        .filter(pk=message_id)
        .first()
    )
    if message is None:
        return "missing"
    if message.state not in (State.QUEUED, State.RETRY):
        return f"already {message.state}"
    if message.state == State.RETRY and message.retry_at and message.retry_at > now:
        return "retry not due"
    enrollment, lead = message.enrollment, message.enrollment.lead
    if reason := why_not_send(message, lead, enrollment):
        _cancel(message, reason)
        return "cancelled"
    language = rendering.lead_language(lead)
    template = rendering.template_for(enrollment.sequence, message.number, language)
    try:
        if template is None:
            raise TemplateSyntaxError("the sequence has no message templates")
        context = rendering.template_context(
            lead, message.sender, unsubscribe=rendering.unsubscribe_url(message.pk)
        )
        rendered = rendering.render(template, context, language)
    except TemplateSyntaxError as error:
        _fail(message, f"template error: {error}")
        return "failed"
    message.subject, message.body_text, message.body_html = (
        rendered.subject,
        rendered.body_text,
        rendered.body_html,
    )
    message.to_email = lead.email
    message.message_id = message.message_id or make_msgid(domain=settings.NURTURE_MESSAGE_ID_DOMAIN)
    message.state = State.SENDING
    message.attempts += 1
    message.retry_at = None
    message.lease_expires_at = now + timedelta(seconds=settings.NURTURE_SEND_LEASE_SECONDS)
    message.save()
    return "claimed"


@transaction.atomic
def _deliver(message_id: int) -> str:
    # Lock order everywhere: lead, then enrollment, then message. A status change or a halt
    # waits here until this send is recorded, or has already won and this send does not go out.
    # The sender and the responsible manager come with the locked rows (not locked themselves):
    # each is a query less per send.
    enrollment_id, lead_id = OutboundMessage.objects.values_list(
        "enrollment_id", "enrollment__lead_id"
    ).get(pk=message_id)
    lead = (
        Lead.objects.select_for_update(of=("self",)).select_related("responsible").get(pk=lead_id)
    )
    enrollment = (
        Enrollment.objects.select_for_update(of=("self",))
        .select_related("sequence")
        .get(pk=enrollment_id)
    )
    message = (
        OutboundMessage.objects.select_for_update(of=("self",))
        .select_related("sender")
        .get(pk=message_id)
    )
    message.enrollment = enrollment
    if message.state != State.SENDING:
        return f"already {message.state}"
    if reason := why_not_send(message, lead, enrollment):
        _cancel(message, reason)
        return "cancelled"

    email = rendering.build_email(message, lead, message.sender)
    try:
        connections.get().send_messages([email])
    except Exception as error:  # noqa: BLE001 - sorted below; unknown errors keep the lease
        connections.drop()
        outcome = classify(error)
        if isinstance(outcome, TransientError):
            return _retry_or_fail(message, str(outcome))
        if isinstance(outcome, PermanentError):
            _fail(message, str(outcome))
            if outcome.recipient_refused:
                halt(Enrollment.objects.filter(pk=enrollment.pk), Enrollment.HaltReason.BOUNCE)
            return "failed"
        raise

    now = timezone.now()
    message.state = State.SENT
    message.sent_at = now
    message.lease_expires_at = None
    message.error = ""
    status = getattr(email, "anymail_status", None)
    message.provider_message_id = (status.message_id if status else None) or message.message_id
    message.save()
    _record_sent(message, lead, enrollment)
    return "sent"


def _record_sent(message, lead, enrollment):
    total = enrollment.sequence.max_messages
    record_activity(
        lead,
        Activity.Kind.EMAIL_OUT,
        gettext_noop("Email sent"),
        actor=message.sender,
        payload={
            "message": message.pk,
            "number": message.number,
            "total": total,
            "subject": message.subject,
        },
    )
    tell_manager(
        lead,
        gettext_noop("Email %(number)d of %(total)d sent to %(lead)s."),
        number=message.number,
        total=total,
        lead=lead.full_name or lead.email,
    )
    _complete_if_last(message)


def _cancel(message: OutboundMessage, reason: str) -> None:
    message.state = State.CANCELLED
    message.error = reason
    message.lease_expires_at = None
    message.save(update_fields=["state", "error", "lease_expires_at"])


def _fail(message: OutboundMessage, error: str) -> None:
    message.state = State.FAILED
    message.error = error
    message.lease_expires_at = None
    message.save()
    lead = message.enrollment.lead
    tell_manager(
        lead,
        gettext_noop("Email %(number)d to %(lead)s could not be sent: %(error)s"),
        number=message.number,
        lead=lead.full_name or lead.email,
        error=error,
    )
    _complete_if_last(message)


def _retry_or_fail(message: OutboundMessage, error: str) -> str:
    if message.attempts >= settings.NURTURE_MAX_SEND_ATTEMPTS:
        _fail(message, error)
        return "failed"
    backoff = timedelta(minutes=4 ** (message.attempts - 1))  # 1, 4, 16, 64 minutes
    message.state = State.RETRY
    message.retry_at = timezone.now() + backoff
    message.error = error
    message.lease_expires_at = None
    message.save()
    return "retry"
