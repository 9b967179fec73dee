"""Sending outbound messages, each exactly once or not at all, in batches.

A batch is claimed in one transaction (each message moves to `sending` with a lease, which is
committed before any SMTP traffic), then delivered: the batch's leads, enrollments and messages
are locked in that order, every message is checked again and sent over the worker's reused
connection (or NURTURE_SEND_CONNECTIONS of them at once), and the outcomes are recorded in bulk
before the locks go. A stop (status change, halt) that commits first is seen and nothing goes
out; one that comes later waits for the batch. A batch keeps its locks at most about
DELIVERY_SECONDS plus one send: the rest of it is delivered in the next transaction.

Locks die with the database session that holds them, so before each email is committed to the
server (`_Fence`) the session is asked whether it is still there; every acceptance is written
to the worker's journal (`nurture.journal`) before it is written to the database.
"""

import logging
import select
import threading
import time as clock
from datetime import timedelta
from email.utils import make_msgid

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import connection, transaction
from django.template import TemplateSyntaxError
from django.utils import timezone
from django.utils.translation import gettext_noop

from crm.bulk import update_each
from crm.models import Activity, Lead, Notification
from crm.services import add_activities, new_activity
from nurture import journal, rendering, schedule, selectors
from nurture.models import Enrollment, OutboundMessage
from nurture.services import complete_if_last, halt, manager_notification, tell_manager
from nurture.transport import LocksLost, PermanentError, TransientError, Transmission, transmit

logger = logging.getLogger(__name__)
State = OutboundMessage.State


def why_not_send(lead: Lead, enrollment: Enrollment, *, address_suppressed: bool) -> str:
    """Empty when the enrollment's message may go out now; otherwise why not.
    `address_suppressed`: whether the address it goes to is on the suppression list."""
    if enrollment.state != Enrollment.State.ACTIVE:
        return f"enrollment {enrollment.state}"
    if lead.status_id != enrollment.sequence.enrolling_status_id:
        return "lead left the enrolling status"
    if address_suppressed:
        return "address is on the suppression list"
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

    When the database fails (LocksLost is one way), the journal says which of the claimed
    messages the server accepted and which it never got, and the error goes up: the caller
    retries once the journal is replayed (`nurture.outbox.replay_journals`).
    """
    claims = []
    own = journal.current()
    own.doubtful.clear()
    try:
        outcomes, claimed = _claim(message_ids, claims)
        own.claimed(claims)
        while claimed:
            delivered = _deliver(claimed)
            # Committed: the database now holds everything the journal says.
            own.clear()
            outcomes.update(delivered)
            claimed = [message for message in claimed if message.pk not in delivered]
            pending = {message.pk for message in claimed}
            own.claimed([claim for claim in claims if claim[0] in pending])
    except (DatabaseError, LocksLost):
        # Whether or not the last commit happened, these never reached the server; a replay
        # gives each back only if it is still in this very claim (same attempt, same lease).
        own.unsent([c for c in claims if c[0] not in own.accepted and c[0] not in own.doubtful])
        own.sync()
        raise
    return outcomes


def _claim(
    message_ids: list[int], claims: list[tuple[int, int, str]] | None = None
) -> tuple[dict[int, str], list[OutboundMessage]]:
    """Render each message that may go and move it to `sending` with a lease; return what
    happened to each, and the claimed messages. `claims` gets (pk, attempts, lease) of each
    claimed message, even when the commit fails."""
    with transaction.atomic():
        return _claim_in_transaction(message_ids, [] if claims is None else claims)


def _claim_in_transaction(message_ids, claims):
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
        .annotate(address_suppressed=selectors.address_is_suppressed("enrollment__lead__email"))
        .filter(pk__in=message_ids)
        .order_by("pk")
    }
    lease_expires_at = now + timedelta(seconds=settings.NURTURE_SEND_LEASE_SECONDS)
    planner = schedule.Planner()  # whether the window is open, once per sequence and time zone
    outcomes, claimed, postponed = {}, [], []
    for pk in message_ids:
        message = messages.get(pk)
        if message is None:
            outcomes[pk] = "missing"
        elif message.state not in (State.QUEUED, State.RETRY):
            outcomes[pk] = f"already {message.state}"
        elif message.state == State.RETRY and message.retry_at and message.retry_at > now:
            outcomes[pk] = "retry not due"
        elif reason := why_not_send(
            message.enrollment.lead,
            message.enrollment,
            address_suppressed=message.address_suppressed,
        ):
            _cancel(message, reason)
            outcomes[pk] = "cancelled"
        elif later := schedule.message_held_until(message, now, planner):
            # Its task came late (workers or broker down): it waits for the window, as a retry.
            message.state, message.retry_at = State.RETRY, later
            postponed.append(message)
            outcomes[pk] = "postponed"
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
            claims.append((message.pk, message.attempts, lease_expires_at.isoformat()))
            outcomes[pk] = "claimed"
    update_each(claimed, CLAIMED_FIELDS)
    update_each(postponed, ["state", "retry_at"])
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
    # expired), whether the lead's address or the one the message goes to is suppressed; the
    # rest of a `sending` message is ours alone. (A suppression that commits while this waits
    # for a lead's lock also marks the lead do-not-email, which the locked row shows.)
    lead_rows = (
        Lead.objects.select_for_update()
        .filter(pk__in={m.enrollment.lead_id for m in claimed})
        .order_by("pk")
        .values_list(
            "pk", "status_id", "do_not_email", "email", selectors.address_is_suppressed("email")
        )
    )
    leads = {pk: fresh for pk, *fresh in lead_rows}
    enrollments = dict(
        Enrollment.objects.select_for_update()
        .filter(pk__in={m.enrollment_id for m in claimed})
        .order_by("pk")
        .values_list("pk", "state")
    )
    states = {
        pk: (state, suppressed)
        for pk, state, suppressed in OutboundMessage.objects.select_for_update()
        .filter(pk__in=[m.pk for m in claimed])
        .order_by("pk")
        .values_list("pk", "state", selectors.address_is_suppressed("to_email"))
    }

    outcomes = {}
    transmissions = []
    for message in claimed:
        if message.pk not in states:
            outcomes[message.pk] = "missing"
            continue
        message.state, recipient_suppressed = states[message.pk]
        enrollment, lead = message.enrollment, message.enrollment.lead
        enrollment.state = enrollments[enrollment.pk]
        lead.status_id, lead.do_not_email, lead.email, lead_suppressed = leads[lead.pk]
        if message.state != State.SENDING:
            outcomes[message.pk] = f"already {message.state}"
        elif reason := why_not_send(
            lead, enrollment, address_suppressed=recipient_suppressed or lead_suppressed
        ):
            _cancel(message, reason)
            outcomes[message.pk] = "cancelled"
        else:
            email = rendering.build_email(
                message, lead, message.sender, unsubscribe=message.unsubscribe_url
            )
            transmissions.append(Transmission(message, email))

    own_journal = journal.current()

    def accepted(transmission: Transmission) -> None:
        message = transmission.message
        own_journal.sent(
            message.pk,
            message.message_id,
            _provider_message_id(transmission),
            transmission.accepted_at.isoformat(),
        )

    planner = schedule.Planner()  # for retries' times: the calendar read once, if at all
    fence = _Fence()
    server_down = transmit(
        transmissions,
        deadline=clock.monotonic() + DELIVERY_SECONDS,
        fence=fence,
        on_trying=lambda transmission: own_journal.trying(transmission.message.pk),
        on_accepted=accepted,
    )
    for transmission in transmissions:
        if transmission.tried and _may_have_gone(transmission.error):
            # Never given back, even if the fence's failure below gives back all the rest.
            own_journal.doubtful.add(transmission.message.pk)
    if fence.lost:
        raise LocksLost(fence.lost)
    sent = []
    for transmission in transmissions:
        message = transmission.message
        if not transmission.tried:
            if server_down:
                outcomes[message.pk] = _retry_or_fail(message, server_down, planner)
            # else out of time: still claimed, for the next call
        elif transmission.error is None:
            _mark_sent(message, transmission)
            outcomes[message.pk] = "sent"
            sent.append(message)
        else:
            outcomes[message.pk] = _settle_error(message, transmission.error, planner)
    _record_sent(sent)
    if sent:
        own_journal.sync()  # on disk before the commit that makes it unneeded can fail
    return outcomes


class _Fence:
    """Makes sure, just before each email is committed to the server, that the delivering
    transaction's database session is still there (and so still holds its locks).

    Why that is enough: a halt or a status change must take the lead's lock, which this
    session holds from its first SELECT … FOR UPDATE until it ends; so the halt cannot commit
    before the session is gone. The check is made after the whole message has been handed to
    the SMTP server and before the final "." that makes the server take it (`transport`): the
    last possible moment. Two ways to check, with the same guarantee:

    - a round trip (SELECT 1): a session that answers inside this transaction is alive, and
      its transaction not aborted, when PostgreSQL answers;
    - a look at the session's socket, without a round trip: PostgreSQL tells a client whose
      session it ends (pg_terminate_backend, a fast or immediate shutdown, a timeout) with an
      error message, or closes the connection, before the session's locks are released; so
      while nothing has arrived on the socket, the locks are held, or were released at most
      one network latency ago.

    Either way the only email that can still follow a committed halt is one whose "." was
    written within about one network latency plus a few microseconds of the halt's commit,
    after the session was ended in that same instant: on loopback a fraction of a
    millisecond, which the drills (benchmarks/drills.py) have never hit. Looking at the socket
    costs microseconds where a round trip cost about 1.7 ms an email on a busy machine, so it
    is used before each email, with a round trip every ROUND_TRIP_SECONDS as well: a database
    machine that died outright sends nothing, and only a round trip notices it (a machine
    cannot die and come back with the halt committed within that time). Without a socket to
    look at (SQLite, other drivers) every check is a round trip. With an ESP's HTTP API there
    is no "." to hold back: the check comes just before the request, and the request's own
    duration is the window.

    One lock serialises the checks, since sending threads share the session."""

    ROUND_TRIP_SECONDS = 0.25

    def __init__(self):
        connection.ensure_connection()
        self.session = connection.connection  # the DB-API connection of this transaction
        pgconn = getattr(self.session, "pgconn", None)  # psycopg 3
        self.socket = pgconn.socket if pgconn is not None else None
        self.confirmed_at = clock.monotonic()  # the lock queries were just answered
        self.lock = threading.Lock()
        self.lost = ""

    def __call__(self) -> None:
        with self.lock:
            if not self.lost:
                try:
                    if self.socket is not None and (
                        clock.monotonic() - self.confirmed_at < self.ROUND_TRIP_SECONDS
                    ):
                        if select.select([self.socket], [], [], 0)[0]:
                            # An idle session in a transaction gets nothing unasked: this is
                            # its end (or, harmlessly, something that makes us stop anyway).
                            raise LocksLost("the database sent something unasked")
                    else:
                        self._round_trip()
                except Exception as error:  # noqa: BLE001 - the driver's own error, any kind
                    self.lost = f"the database session was lost: {error}"
            if self.lost:
                raise LocksLost(self.lost)

    def _round_trip(self) -> None:
        cursor = self.session.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchone()
        cursor.close()
        self.confirmed_at = clock.monotonic()


def _provider_message_id(transmission: Transmission) -> str:
    status = getattr(transmission.email, "anymail_status", None)
    return (status.message_id if status else None) or transmission.message.message_id


def _mark_sent(message: OutboundMessage, transmission: Transmission) -> None:
    message.state = State.SENT
    message.sent_at = transmission.accepted_at
    message.lease_expires_at = None
    message.error = ""
    message.provider_message_id = _provider_message_id(transmission)


def _may_have_gone(error: Exception | None) -> bool:
    """An error that neither the server nor the fence explains: the email may have gone."""
    return error is not None and not isinstance(error, (TransientError, PermanentError, LocksLost))


def _settle_error(message: OutboundMessage, outcome: Exception, planner=None) -> str:
    """Record why the backend refused `message` (`outcome`: the error as `classify` sorted
    it); return what happened."""
    if isinstance(outcome, TransientError):
        return _retry_or_fail(message, str(outcome), planner)
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


def record_sent(messages: list[OutboundMessage]) -> None:
    """Record messages the server accepted (each with state, sent_at and provider id set), as
    a delivery does; for the journal's replay."""
    _record_sent(messages)


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
    add_activities(activities)
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


def _retry_or_fail(message: OutboundMessage, error: str, planner=None) -> str:
    if message.attempts >= settings.NURTURE_MAX_SEND_ATTEMPTS:
        _fail(message, error)
        return "failed"
    backoff = timedelta(minutes=4 ** (message.attempts - 1))  # 1, 4, 16, 64 minutes
    message.state = State.RETRY
    message.retry_at = schedule.retry_time(message, timezone.now() + backoff, planner)
    message.error = error
    message.lease_expires_at = None
    message.save()
    return "retry"
