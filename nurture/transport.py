"""Talking to the email backend: one reused connection per thread, emails handed over by a
small pool of threads, and every backend error sorted into transient or permanent.

Nothing here touches the database: `nurture.sending` decides what to send and records what
happened.
"""

import logging
import smtplib
import socket
import threading
import time as clock
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import requests
from anymail.exceptions import AnymailError, AnymailRecipientsRefused, AnymailRequestsAPIError
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.utils import timezone

logger = logging.getLogger(__name__)


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


class ReplyLost(Exception):
    """The server had the whole email (over SMTP its final "." included, over an ESP's API the
    whole request) and the connection failed before its answer: it may have queued the email.
    Neither transient nor permanent: never sent again (the message becomes "unknown", and its
    manager is told)."""


class LocksLost(Exception):
    """The fence failed: the database session that holds the batch's locks is gone, so a halt
    may already have committed. Nothing more may be handed to the server."""


def classify(error: Exception) -> Exception:
    """Sort an exception from an email backend into transient or permanent."""
    if isinstance(error, LocksLost | ReplyLost):
        return error
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
    if isinstance(error, requests.exceptions.ReadTimeout):
        # The ESP's API had the whole request and did not answer in time: it may have sent it.
        return ReplyLost(f"the ESP did not answer in time: {error}")
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


class _FencedDataMixin:
    """smtplib's DATA, but with `fence()` called after the message's content and before the
    final "." that commits the server to it. If the fence raises, the socket is closed without
    that ".": the server discards the unfinished message (RFC 5321, 4.1.1.4)."""

    fence = None

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        # The final "." goes in a segment of its own: without this, Nagle's algorithm holds it
        # until the server acknowledges the content, which a delayed ACK makes 40 ms an email.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def data(self, msg):
        if self.fence is None:
            return super().data(msg)
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        if isinstance(msg, str):
            msg = smtplib._fix_eols(msg).encode("ascii")
        content = smtplib._quote_periods(msg)
        if content[-2:] != smtplib.bCRLF:
            content += smtplib.bCRLF
        self.send(content)
        try:
            self.fence()
        except BaseException:
            self.close()  # no QUIT: mid-DATA it would be read as content
            raise
        self.send(b"." + smtplib.bCRLF)
        try:
            return self.getreply()
        except OSError as error:  # SMTPServerDisconnected, a timeout, a reset
            self.close()
            raise ReplyLost(f"the connection failed before the server answered: {error}") from error


class FencedSMTP(_FencedDataMixin, smtplib.SMTP):
    pass


class FencedSMTP_SSL(_FencedDataMixin, smtplib.SMTP_SSL):  # noqa: N801 - as smtplib names it
    pass


class FencedSMTPBackend(DjangoSMTPBackend):
    """Django's SMTP backend, calling `fence` (when set) just before each email's final "."."""

    fence = None

    @property
    def connection_class(self):
        return FencedSMTP_SSL if self.use_ssl else FencedSMTP

    def _send(self, email_message):
        if self.connection is not None:
            self.connection.fence = self.fence
        return super()._send(email_message)


def _open_backend():
    if settings.EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend":
        return get_connection("nurture.transport.FencedSMTPBackend")
    return get_connection()


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
            self.connection = _open_backend()
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


@dataclass(slots=True)
class Transmission:
    """One email on its way to the backend, and how that went."""

    message: object  # the OutboundMessage it is for
    email: EmailMessage
    tried: bool = False
    error: Exception | None = None  # as `classify` sorted it
    accepted_at: datetime | None = None  # when the backend took it


def transmit(
    transmissions: list[Transmission],
    *,
    deadline: float,
    fence=None,
    on_trying=None,
    on_accepted=None,
) -> str:
    """Hand each email to the email backend, over NURTURE_SEND_CONNECTIONS connections at once
    (each reused from send to send). No new send starts after `deadline` (the first always
    does), once the server itself failed, or once the fence failed; return that failure, if it
    happened.

    `fence()`, if given, is called for every email at the last moment before the server is
    committed to it: over SMTP between the content and the final "."; with any other backend
    just before it is called. It raises LocksLost to stop. `on_trying(transmission)` is
    called before anything of an email goes to the backend, `on_accepted(transmission)` the
    moment the backend has taken it.

    Only the backend (and those two) run in the pool's threads: every database write stays in
    the caller's transaction.
    """
    down: list[str] = []

    def transmit_one(index: int, transmission: Transmission) -> None:
        if down or (index and clock.monotonic() > deadline):
            return
        transmission.tried = True
        if on_trying is not None:
            on_trying(transmission)
        try:
            backend = connections.get()
            if isinstance(backend, FencedSMTPBackend):
                backend.fence = fence
            elif fence is not None:
                fence()
            backend.send_messages([transmission.email])
            transmission.accepted_at = timezone.now()
        except Exception as error:  # noqa: BLE001 - kept for the caller to sort
            connections.drop()
            transmission.error = classify(error)
            if isinstance(transmission.error, LocksLost | ReplyLost) or (
                isinstance(transmission.error, TransientError) and transmission.error.server_down
            ):
                down.append(str(transmission.error) or "the database session was lost")
            return
        if on_accepted is not None:
            on_accepted(transmission)

    width = settings.NURTURE_SEND_CONNECTIONS
    if width > 1 and len(transmissions) > 1:
        list(_pool(width).map(transmit_one, range(len(transmissions)), transmissions))
    else:
        for index, transmission in enumerate(transmissions):
            transmit_one(index, transmission)
    return down[0] if down else ""


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(width: int) -> ThreadPoolExecutor:
    """The process's sending threads, each with its own connection (created on first use, so
    after a prefork worker has forked)."""
    if width not in _pools:
        _pools[width] = ThreadPoolExecutor(max_workers=width, thread_name_prefix="nurture-send")
    return _pools[width]
