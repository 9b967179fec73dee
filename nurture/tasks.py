"""Celery tasks: thin. The dispatcher and the outbox upkeep return the ids of messages to send;
publishing them, after their rows are committed, is done here."""

from contextlib import nullcontext
from functools import partial

from celery import shared_task
from django.conf import settings
from django.db import transaction

from nurture import dispatch, outbox, sending


@shared_task(ignore_result=True)
def dispatch_due() -> int:
    """Every minute, from beat: settle expired leases, resend due retries and lost tasks,
    dispatch what is due (each batch's sends published as soon as it commits)."""
    outbox.reconcile_expired_leases()
    publish_sends(outbox.requeue_due_retries())
    publish_sends(outbox.requeue_lost_sends())
    dispatched = 0
    for ids in dispatch.dispatch_batches():
        publish_sends(ids)
        dispatched += len(ids)
    return dispatched


@shared_task(ignore_result=True, acks_late=True)
def send_messages(message_ids: list[int]) -> dict[int, str]:
    """Send a batch of dispatched messages (see nurture.sending)."""
    return sending.send_messages(message_ids)


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
    rather than one round trip each; elsewhere, and in eager mode, one by one."""
    size = settings.NURTURE_SEND_BATCH
    with send_messages.app.producer_or_acquire() as producer:
        batch = getattr(producer, "batch", None)
        with batch() if batch is not None else nullcontext():
            for start in range(0, len(message_ids), size):
                send_messages.apply_async((message_ids[start : start + size],), producer=producer)
