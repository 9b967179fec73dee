"""Sending outbound messages, each exactly once or not at all, in batches.

A batch is claimed in one transaction (each message moves to `sending` with a lease, which is
committed before any SMTP traffic), then delivered: the batch's leads, enrollments and messages
are locked in that order, every message is checked again and sent over the worker's reused
connection (or NURTURE_SEND_CONNECTIONS of them at once), and the outcomes are recorded in bulk
before the locks go. A stop (status change, halt) that commits first is seen and nothing goes
out; one that comes later waits for the batch. A batch keeps its locks at most about
DELIVERY_SECONDS plus one send: the rest of it is delivered in the next transaction.
"""

import logging
import smtplib
import socket
import threading
import time as clock
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import make_msgid

from anymail.exceptions import AnymailError, AnymailRecipientsRefused, AnymailRequestsAPIError
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.template import TemplateSyntaxError
from django.utils import timezone
from django.utils.translation import gettext_noop

from crm.bulk import update_each
from crm.models import Activity, Lead, Notification
from crm.services import new_activity
from nurture import rendering
from nurture.models import Enrollment, OutboundMessage
from nurture.services import complete_if_last, halt, manager_notification, tell_manager

logger = logging.getLogger(__name__)
State = OutboundMessage.State


class TransientError(Exception):
    """Worth trying again later. `server_down`: the connection itself failed, so the rest of a
    batch would fail the same way."""

    def __init__(self, text, *, server_down=False):
        super().__init__(text)
        self.server_down = server_down


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
        text = f"{error.smtp_code} {error.smtp_error!r}"
        if 400 <= error.smtp_code < 500:
            # 421: the server is closing the connection.
            return TransientError(text, server_down=error.smtp_code == 421)
        return PermanentError(text)
    if isinstance(error, smtplib.SMTPServerDisconnected | socket.timeout | ConnectionError):
        return TransientError(str(error) or type(error).__name__, server_down=True)
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
        return TransientError(str(error), server_down=True)
    return error


class ConnectionCache(threading.local):
    """One email-backend connection per thread (the worker's, and each sending thread's),
    reused across sends. `reset()` makes every thread open a fresh one on its next send (after
    the email settings changed, say)."""

    idle_check_after = 30  # seconds; an SMTP server may drop an idle connection
    generation = 0  # shared by all threads: bumped by reset()

    def __init__(self):
        self.connection = None
        self.last_used = 0.0
        self.opened_in = 0

    def get(self):
        stale = self.opened_in != ConnectionCache.generation
        idle = clock.monotonic() - self.last_used
        if self.connection is not None and (
            stale or (idle > self.idle_check_after and not self._alive())
        ):
            self.drop()
        if self.connection is None:
            self.connection = get_connection()
            self.connection.open()
            self.opened_in = ConnectionCache.generation
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
        """Close this thread's connection."""
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone
                logger.debug("closing a broken email connection failed", exc_info=True)
        self.connection = None

    def reset(self):
        """Close this thread's connection and make every other thread replace its own."""
        ConnectionCache.generation += 1
        self.drop()


connections = ConnectionCache()


def why_not_send(lead: Lead, enrollment: Enrollment) -> str:
    """Empty when the enrollment's message may go out now; otherwise why not."""
    if enrollment.state != Enrollment.State.ACTIVE:
        return f"enrollment {enrollment.state}"
    if lead.status_id != enrollment.sequence.enrolling_status_id:
        return "lead left the enrolling status"
    if lead.do_not_email:
        return "lead is marked do-not-email"
    if not lead.email:
        return "lead has no email address"
    return ""


DELIVERY_SECONDS = 1.0  # how long one delivery transaction keeps sending before it commits


def send_message(message_id: int) -> str:
    """Send message `message_id` if it is still wanted; return what happened."""
    return send_messages([message_id])[message_id]


def send_messages(message_ids: list[int]) -> dict[int, str]:
    """Send each of these messages that is still wanted; return what happened to each.

    Safe to call twice or concurrently for the same messages: only the call that moves a row
    from queued (or due retry) to sending goes on with it.
    """
    outcomes, claimed = _claim(message_ids)
    while claimed:
        delivered = _deliver(claimed)
        outcomes.update(delivered)
        claimed = [message for message in claimed if message.pk not in delivered]
    return outcomes


@transaction.atomic
def _claim(message_ids: list[int]) -> tuple[dict[int, str], list[OutboundMessage]]:
    """Render each message that may go and move it to `sending` with a lease; return what
    happened to each, and the claimed messages."""
    now = timezone.now()
    message_ids = list(dict.fromkeys(message_ids))  # each once, in the order given
    messages = {
        message.pk: message
        for message in OutboundMessage.objects.select_for_update(of=("self",))
        .select_related(
            "enrollment__sequence",
            "enrollment__lead__responsible",
            "sender__profile",
        )
        .prefetch_related("enrollment__sequence__templates")
        .filter(pk__in=message_ids)
        .order_by("pk")
    }
    lease_expires_at = now + timedelta(seconds=settings.NURTURE_SEND_LEASE_SECONDS)
    outcomes, claimed = {}, []
    for pk in message_ids:
        message = messages.get(pk)
        if message is None:
            outcomes[pk] = "missing"
        elif message.state not in (State.QUEUED, State.RETRY):
            outcomes[pk] = f"already {message.state}"
        elif message.state == State.RETRY and message.retry_at and message.retry_at > now:
            outcomes[pk] = "retry not due"
        elif reason := why_not_send(message.enrollment.lead, message.enrollment):
            _cancel(message, reason)
            outcomes[pk] = "cancelled"
        elif error := _render(message):
            _fail(message, f"template error: {error}")
            outcomes[pk] = "failed"
        else:
            message.to_email = message.enrollment.lead.email
            message.message_id = message.message_id or make_msgid(
                domain=settings.NURTURE_MESSAGE_ID_DOMAIN
            )
            message.state = State.SENDING
            message.attempts += 1
            message.retry_at = None
            message.lease_expires_at = lease_expires_at
            claimed.append(message)
            outcomes[pk] = "claimed"
    update_each(claimed, CLAIMED_FIELDS)
    return outcomes, claimed


CLAIMED_FIELDS = [
    "subject",
    "body_text",
    "body_html",
    "to_email",
    "message_id",
    "state",
    "attempts",
    "retry_at",
    "lease_expires_at",
]


def _render(message: OutboundMessage) -> str:
    """Fill in the message's subject and bodies (and its unsubscribe_url, for the headers);
    the error, if its template is broken."""
    enrollment, lead = message.enrollment, message.enrollment.lead
    language = rendering.lead_language(lead)
    template = rendering.template_for(enrollment.sequence, message.number, language)
    if template is None:
        return "the sequence has no message templates"
    message.unsubscribe_url = rendering.unsubscribe_url(message.pk)
    context = rendering.template_context(lead, message.sender, unsubscribe=message.unsubscribe_url)
    try:
        rendered = rendering.render(template, context, language)
    except TemplateSyntaxError as error:
        return str(error)
    message.subject, message.body_text, message.body_html = (
        rendered.subject,
        rendered.body_text,
        rendered.body_html,
    )
    return ""


@transaction.atomic
def _deliver(claimed: list[OutboundMessage]) -> dict[int, str]:
    """Send claimed (and rendered) messages under locks; return the outcome of each one it got
    to. After DELIVERY_SECONDS it stops and commits: the others are still claimed, for the
    next call."""
    # Lock order everywhere: lead, then enrollment, then message. A status change or a halt
    # waits here until these sends are recorded, or has already won and they do not go out.
    # Only what may have changed since the claim is read again: the lead's status and address,
    # the enrollment's state, the message's state (a reconciler may have found its lease
    # expired); the rest of a `sending` message is ours alone.
    lead_rows = (
        Lead.objects.select_for_update()
        .filter(pk__in={m.enrollment.lead_id for m in claimed})
        .order_by("pk")
        .values_list("pk", "status_id", "do_not_email", "email")
    )
    leads = {pk: fresh for pk, *fresh in lead_rows}
    enrollments = dict(
        Enrollment.objects.select_for_update()
        .filter(pk__in={m.enrollment_id for m in claimed})
        .order_by("pk")
        .values_list("pk", "state")
    )
    states = dict(
        OutboundMessage.objects.select_for_update()
        .filter(pk__in=[m.pk for m in claimed])
        .order_by("pk")
        .values_list("pk", "state")
    )

    outcomes = {}
    transmissions = []
    for message in claimed:
        message.state = states.get(message.pk)
        if message.state is None:
            outcomes[message.pk] = "missing"
            continue
        enrollment, lead = message.enrollment, message.enrollment.lead
        enrollment.state = enrollments[enrollment.pk]
        lead.status_id, lead.do_not_email, lead.email = leads[lead.pk]
        if message.state != State.SENDING:
            outcomes[message.pk] = f"already {message.state}"
        elif reason := why_not_send(lead, enrollment):
            _cancel(message, reason)
            outcomes[message.pk] = "cancelled"
        else:
            email = rendering.build_email(
                message, lead, message.sender, unsubscribe=message.unsubscribe_url
            )
            transmissions.append(Transmission(message, email))

    server_down = _transmit(transmissions, deadline=clock.monotonic() + DELIVERY_SECONDS)
    sent = []
    for transmission in transmissions:
        message = transmission.message
        if not transmission.tried:
            if server_down:
                outcomes[message.pk] = _retry_or_fail(message, server_down)
            # else out of time: still claimed, for the next call
        elif transmission.error is None:
            _mark_sent(message, transmission)
            outcomes[message.pk] = "sent"
            sent.append(message)
        else:
            outcomes[message.pk] = _settle_error(message, transmission.error)
    _record_sent(sent)
    return outcomes


@dataclass(slots=True)
class Transmission:
    message: OutboundMessage
    email: EmailMessage
    tried: bool = False
    error: Exception | None = None  # as `classify` sorted it
    accepted_at: datetime | None = None  # when the backend took it


def _transmit(transmissions: list[Transmission], *, deadline: float) -> str:
    """Hand each email to the email backend, over NURTURE_SEND_CONNECTIONS connections at once
    (each reused from send to send). No new send starts after `deadline` (the first always
    does) or once the server itself failed; return that failure, if it happened.

    Only the backend runs in the pool's threads: every database write stays in the caller's
    transaction.
    """
    down: list[str] = []

    def transmit(index: int, transmission: Transmission) -> None:
        if down or (index and clock.monotonic() > deadline):
            return
        transmission.tried = True
        try:
            connections.get().send_messages([transmission.email])
            transmission.accepted_at = timezone.now()
        except Exception as error:  # noqa: BLE001 - kept for the caller to sort
            connections.drop()
            transmission.error = classify(error)
            if isinstance(transmission.error, TransientError) and transmission.error.server_down:
                down.append(str(transmission.error))

    width = settings.NURTURE_SEND_CONNECTIONS
    if width > 1 and len(transmissions) > 1:
        list(_pool(width).map(transmit, range(len(transmissions)), transmissions))
    else:
        for index, transmission in enumerate(transmissions):
            transmit(index, transmission)
    return down[0] if down else ""


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(width: int) -> ThreadPoolExecutor:
    """The process's sending threads, each with its own connection (created on first use, so
    after a prefork worker has forked)."""
    if width not in _pools:
        _pools[width] = ThreadPoolExecutor(max_workers=width, thread_name_prefix="nurture-send")
    return _pools[width]


def _mark_sent(message: OutboundMessage, transmission: Transmission) -> None:
    message.state = State.SENT
    message.sent_at = transmission.accepted_at
    message.lease_expires_at = None
    message.error = ""
    status = getattr(transmission.email, "anymail_status", None)
    message.provider_message_id = (status.message_id if status else None) or message.message_id


def _settle_error(message: OutboundMessage, outcome: Exception) -> str:
    """Record why the backend refused `message` (`outcome`: the error as `classify` sorted
    it); return what happened."""
    if isinstance(outcome, TransientError):
        return _retry_or_fail(message, str(outcome))
    if isinstance(outcome, PermanentError):
        _fail(message, str(outcome))
        if outcome.recipient_refused:
            halt(Enrollment.objects.filter(pk=message.enrollment_id), Enrollment.HaltReason.BOUNCE)
        return "failed"
    # Unknown: it may or may not have gone out. The lease stays; the reconciler marks the
    # message unknown and tells the manager, as for a worker that died here.
    logger.error("sending message %s failed unexpectedly", message.pk, exc_info=outcome)
    return "error"


SENT_FIELDS = ["state", "sent_at", "lease_expires_at", "error", "provider_message_id"]


def _record_sent(messages: list[OutboundMessage]) -> None:
    """Record sent messages in bulk: their rows, a timeline entry and a notification each, and
    the enrollments they completed."""
    if not messages:
        return
    update_each(messages, SENT_FIELDS)
    activities, notifications = [], []
    for message in messages:
        lead, total = message.enrollment.lead, message.enrollment.sequence.max_messages
        activities.append(
            new_activity(
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
                at=message.sent_at,
            )
        )
        notifications.append(
            manager_notification(
                lead,
                gettext_noop("Email %(number)d of %(total)d sent to %(lead)s."),
                number=message.number,
                total=total,
                lead=lead.display_name,
            )
        )
    Activity.objects.bulk_create(activities)
    Notification.objects.bulk_create([n for n in notifications if n is not None])
    complete_if_last(messages)


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
        lead=lead.display_name,
        error=error,
    )
    complete_if_last([message])


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
