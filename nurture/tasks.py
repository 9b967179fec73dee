"""Celery tasks: thin. The dispatcher and the outbox upkeep return the ids of messages to send;
publishing them, after their rows are committed, is done here, and so is what a task does when
the database or the broker fails under it."""

import logging
from contextlib import nullcontext
from functools import partial

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, connections, transaction

from nurture import dispatch, journal, outbox, sending
from nurture.transport import LocksLost

logger = logging.getLogger(__name__)

# The database went away under the task (a restart, a dropped session): worth trying again.
DATABASE_GONE = (OperationalError, InterfaceError, LocksLost)
RETRY_COUNTDOWN_MAX = 30  # seconds between a send task's tries while the database is down


@shared_task(ignore_result=True)
def dispatch_due() -> int:
    """Every minute, from beat: settle expired leases, resend due retries and lost tasks,
    dispatch what is due (each batch's sends published as soon as it commits)."""
    queue_empty = send_queue_is_empty()  # before this tick publishes anything itself
    outbox.reconcile_expired_leases()
    publish_sends(outbox.requeue_due_retries())
    publish_sends(outbox.requeue_lost_sends(queue_empty=queue_empty))
    dispatched = 0
    for ids in dispatch.dispatch_batches():
        publish_sends(ids)
        dispatched += len(ids)
    return dispatched


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=None)
def send_messages(self, message_ids: list[int]) -> dict[int, str]:
    """Send a batch of dispatched messages (see nurture.sending). When the database goes away
    the task is tried again (after 1, 2, 4 … up to 30 s) rather than dropped."""
    try:
        if journal.needs_replay():
            # What an earlier try, or a process that died here, left: before anything new.
            outbox.replay_journals()
        return sending.send_messages(message_ids)
    except DATABASE_GONE as error:
        connection.close()
        countdown = min(RETRY_COUNTDOWN_MAX, 2**self.request.retries)
        logger.warning("send_messages: the database failed (%s); again in %s s", error, countdown)
        raise self.retry(exc=error, countdown=countdown) from error


@shared_task(ignore_result=True, acks_late=True)
def send_message(message_id: int) -> str:
    """A single message, as published before sending went by batches; still accepted."""
    return sending.send_message(message_id)


def publish_sends(message_ids: list[int]) -> None:
    """Hand the messages to the workers, NURTURE_SEND_BATCH to a send_messages task, once the
    transaction that wrote them commits (at once outside a transaction)."""
    if message_ids:
        transaction.on_commit(partial(_publish, list(message_ids)))


def _publish(message_ids: list[int]) -> None:
    """Where the transport can (kombu 5.7+ on Redis), the tasks go out in pipelined groups
    rather than one round trip each; elsewhere, and in eager mode, one by one.

    When the broker cannot take them, the messages are marked to be published again at the
    next beat tick (their rows are committed: nothing is lost, and nothing waits for a timer)."""
    size = settings.NURTURE_SEND_BATCH
    try:
        with send_messages.app.producer_or_acquire() as producer:
            batch = getattr(producer, "batch", None)
            with batch() if batch is not None else nullcontext():
                for start in range(0, len(message_ids), size):
                    send_messages.apply_async(
                        (message_ids[start : start + size],), producer=producer
                    )
    except Exception as error:  # noqa: BLE001 - any broker failure; the rows say what to redo
        if send_messages.app.conf.task_always_eager:
            raise  # not a broker's failure: the task itself failed, in this process
        logger.warning("publishing %s sends failed: %s", len(message_ids), error)
        try:
            outbox.publish_failed(message_ids, str(error) or type(error).__name__)
        except Exception:  # noqa: BLE001 - with the database down too, the lost-task rule finds them
            logger.exception("could not mark %s unpublished messages", len(message_ids))


def send_queue_is_empty() -> bool:
    """Whether the broker's send queue holds no task (tasks a worker has taken do not count).
    False when that cannot be told."""
    app = send_messages.app
    queue = app.conf.task_default_queue
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.default_channel
            # kombu's virtual transports (Redis, the folder broker) count their lists; their
            # passive declare misses a global key prefix.
            if hasattr(channel, "_size"):
                return channel._size(queue) == 0
            try:
                return channel.queue_declare(queue, passive=True).message_count == 0
            except conn.channel_errors:
                return True  # no such queue: nothing in it
    except Exception:  # noqa: BLE001 - no broker, or one that cannot say
        logger.debug("could not measure the send queue", exc_info=True)
        return False


@worker_ready.connect
def _replay_journals_at_start(**kwargs) -> None:
    """What a worker that died on this machine had sent (or never sent) goes into the database
    before anything else, long before its leases would make it unknown. (A prefork child that
    died is replaced without this signal: the next send task on the machine replays it.)"""
    try:
        outbox.replay_journals()
    except Exception:  # noqa: BLE001 - the database may be down; the next task or tick replays
        logger.exception("replaying the journals at worker start failed")
    finally:
        connections.close_all()  # a prefork parent must not hand its connection to children
