"""Incoming mail by IMAP: read new messages of one mailbox folder without marking them read.

`fetch_new` is one pass over the folder (what `manage.py fetch_mail` runs by default); `watch`
keeps passing as mail arrives (IMAP IDLE), reconnecting with backoff when the server goes away.
Where a pass got to is a `MailboxCursor` row: the folder's UIDVALIDITY and the last UID stored.
"""

import logging
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from email.parser import BytesParser

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, close_old_connections, connections, transaction
from django.utils import timezone
from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientError

from telephony.mail.services import receive_email, reject
from telephony.models import MailboxCursor

logger = logging.getLogger(__name__)

SOURCE = "imap"
BATCH_SIZE = 50
MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # larger messages: headers and the start of the text only
LARGE_MESSAGE_TEXT = 1024 * 1024  # bytes
IDLE_RENEW_SECONDS = 10 * 60  # RFC 2177: a client should re-issue IDLE at least every 29 minutes
MAX_BACKOFF_SECONDS = 5 * 60
CONNECTION_ERRORS = (IMAPClientError, OSError)  # socket and TLS errors are OSErrors


@dataclass(frozen=True)
class Mailbox:
    host: str
    port: int
    ssl: bool
    username: str
    password: str
    folder: str = "INBOX"

    @classmethod
    def from_settings(cls) -> "Mailbox":
        if not settings.MAIL_IMAP_HOST or not settings.MAIL_IMAP_USER:
            raise ImproperlyConfigured("MAIL_IMAP_HOST and MAIL_IMAP_USER must be set")
        return cls(
            host=settings.MAIL_IMAP_HOST,
            port=settings.MAIL_IMAP_PORT,
            ssl=settings.MAIL_IMAP_SSL,
            username=settings.MAIL_IMAP_USER,
            password=settings.MAIL_IMAP_PASSWORD,
            folder=settings.MAIL_IMAP_FOLDER or "INBOX",
        )

    def __str__(self):
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"


def connect(mailbox: Mailbox, *, timeout: float = 60) -> IMAPClient:
    client = IMAPClient(
        mailbox.host,
        port=mailbox.port,
        ssl=mailbox.ssl,
        timeout=SocketTimeout(connect=15, read=timeout),
    )
    try:
        client.login(mailbox.username, mailbox.password)
    except BaseException:
        _disconnect(client)
        raise
    return client


def _disconnect(client: IMAPClient) -> None:
    try:
        client.logout()
    except CONNECTION_ERRORS:
        with suppress(OSError):
            client.shutdown()


def fetch_once(mailbox: Mailbox, **options) -> int:
    """Connect, make one pass, log out; return how many new messages were stored."""
    client = connect(mailbox)
    try:
        return fetch_new(client, mailbox, **options)
    finally:
        _disconnect(client)


def fetch_new(
    client: IMAPClient,
    mailbox: Mailbox,
    *,
    batch_size: int = BATCH_SIZE,
    backfill_days: int | None = 7,
) -> int:
    """One pass over the folder: hand every message after the cursor to `receive_email`, in UID
    order and in batches, advancing the cursor after each; return how many were new.

    The folder is opened read-only and bodies are fetched with BODY.PEEK, so nothing is marked
    read. A mailbox seen for the first time is read from `backfill_days` ago (None: all of it);
    when its UIDVALIDITY has changed, UIDs mean nothing any more, so the folder is read again
    from shortly before the last pass, and Message-IDs keep what was already stored from counting
    twice.
    """
    status = client.select_folder(mailbox.folder, readonly=True)
    cursor, _ = MailboxCursor.objects.get_or_create(
        host=mailbox.host, username=mailbox.username, folder=mailbox.folder
    )
    uids = _new_uids(client, mailbox, cursor, status, backfill_days)
    stored = 0
    for start in range(0, len(uids), batch_size):
        for uid, raw in _fetch(client, uids[start : start + batch_size]):
            stored += _receive(raw, uid, cursor)
    # Every message there was when the folder was opened has been seen (or left out as older
    # than the backfill): the next pass starts after them.
    seen = max(int(status.get(b"UIDNEXT") or 0) - 1, cursor.last_uid)
    MailboxCursor.objects.filter(pk=cursor.pk, last_uid__lte=seen).update(
        last_uid=seen, checked_at=timezone.now()
    )
    if uids:
        logger.info("%s: %d messages read, %d new", mailbox, len(uids), stored)
    return stored


def _new_uids(client, mailbox, cursor: MailboxCursor, status: dict, backfill_days) -> list[int]:
    uidvalidity = int(status[b"UIDVALIDITY"])
    if cursor.uidvalidity == uidvalidity:
        # "n:*" always includes the newest message, even when its UID is below n.
        found = client.search(["UID", f"{cursor.last_uid + 1}:*"])
        return sorted(uid for uid in found if uid > cursor.last_uid)
    if cursor.uidvalidity is not None:
        logger.warning("%s: UIDVALIDITY changed, reading the folder again", mailbox)
    since = _since(cursor, backfill_days)
    uids = sorted(client.search(["SINCE", since] if since else ["ALL"]))
    # Older messages are left out for good, even if this pass stops half-way.
    start = uids[0] - 1 if uids else max(int(status.get(b"UIDNEXT") or 1) - 1, 0)
    MailboxCursor.objects.filter(pk=cursor.pk).update(uidvalidity=uidvalidity, last_uid=start)
    cursor.uidvalidity, cursor.last_uid = uidvalidity, start
    return uids


def _since(cursor: MailboxCursor, backfill_days: int | None):
    if cursor.checked_at is not None:  # a changed UIDVALIDITY: since shortly before last time
        return timezone.localdate(cursor.checked_at) - timedelta(days=1)
    if backfill_days is None:
        return None
    return timezone.localdate() - timedelta(days=backfill_days)


def _fetch(client: IMAPClient, uids: list[int]):
    """(uid, raw message) in UID order; a message deleted meanwhile is skipped."""
    sizes = client.fetch(uids, ["RFC822.SIZE"])
    small = [uid for uid in uids if sizes.get(uid, {}).get(b"RFC822.SIZE", 0) <= MAX_MESSAGE_BYTES]
    bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
    for uid in uids:
        if uid in bodies:
            yield uid, bodies[uid][b"BODY[]"]
        elif uid in sizes and uid not in small:
            yield uid, _fetch_large(client, uid)
        else:
            yield uid, None


def _fetch_large(client: IMAPClient, uid: int) -> bytes | None:
    """Headers and the start of the text: enough to match and classify, without attachments."""
    data = client.fetch([uid], ["BODY.PEEK[HEADER]", f"BODY.PEEK[TEXT]<0.{LARGE_MESSAGE_TEXT}>"])
    if uid not in data:
        return None
    return (data[uid].get(b"BODY[HEADER]") or b"") + (data[uid].get(b"BODY[TEXT]<0>") or b"")


def _receive(raw: bytes | None, uid: int, cursor: MailboxCursor) -> int:
    """Store one message and move the cursor past it, together; 1 if it was new."""
    with transaction.atomic():
        inbound = None
        if raw:
            try:
                message = BytesParser(policy=policy.default).parsebytes(raw)
                inbound = receive_email(message, source=SOURCE)
            except DatabaseError:
                raise  # the cursor stays; the next pass tries this message again
            except Exception as error:
                # One message we cannot handle must not stop the mailbox: keep it for a look.
                logger.exception("IMAP message %d could not be handled", uid)
                reject(SOURCE, error, raw, {"uid": uid, "folder": cursor.folder})
        MailboxCursor.objects.filter(pk=cursor.pk, last_uid__lt=uid).update(last_uid=uid)
        cursor.last_uid = max(cursor.last_uid, uid)
    return int(inbound is not None)


def watch(
    mailbox: Mailbox,
    *,
    max_seconds: float | None = None,
    stop: threading.Event | None = None,
    **options,
) -> int:
    """Pass over the folder, then wait for new mail with IMAP IDLE and pass again, until
    `max_seconds` have gone by or `stop` is set. Lost connections are reopened with backoff.
    Returns how many new messages were stored."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def done() -> bool:
        return stop.is_set() or remaining() == 0

    stored, backoff = 0, 1.0
    while not done():
        try:
            client = connect(mailbox)
            try:
                stored += _pass(client, mailbox, **options)
                backoff = 1.0
                while not done():
                    _wait_for_mail(client, mailbox, remaining(), stop)
                    if not done():
                        stored += _pass(client, mailbox, **options)
            finally:
                _disconnect(client)
        except (*CONNECTION_ERRORS, DatabaseError) as error:
            logger.warning("%s: %s; trying again in %.0f s", mailbox, error, backoff)
            stop.wait(backoff if deadline is None else min(backoff, remaining()))
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
    return stored


def _pass(client: IMAPClient, mailbox: Mailbox, **options) -> int:
    _refresh_database_connections()
    try:
        return fetch_new(client, mailbox, **options)
    finally:
        _refresh_database_connections()


def _refresh_database_connections() -> None:
    """A long-running process must not keep using a broken or outlived database connection, as
    Django sees to around each request; but not under a transaction its caller holds open."""
    if not any(connection.in_atomic_block for connection in connections.all()):
        close_old_connections()


def _wait_for_mail(client: IMAPClient, mailbox, remaining: float | None, stop) -> None:
    """Return when the server announces a change, or IDLE is due for renewal, or time is up."""
    timeout = IDLE_RENEW_SECONDS if remaining is None else min(IDLE_RENEW_SECONDS, remaining)
    if not client.has_capability("IDLE"):
        stop.wait(min(timeout, 60))  # no IDLE: poll every minute
        return
    client.idle()
    logger.debug("%s: waiting for new mail (IDLE)", mailbox)
    try:
        responses = client.idle_check(timeout=timeout)
    finally:
        client.idle_done()
    if responses:
        logger.debug("%s: the server says %r", mailbox, responses)
