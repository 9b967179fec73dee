from celery import shared_task

from nurture import sending, services


@shared_task(ignore_result=True)
def dispatch_due() -> int:
    """Every minute, from beat: settle expired leases, resend due retries and lost tasks,
    dispatch what is due."""
    services.reconcile_expired_leases()
    services.requeue_due_retries()
    services.requeue_lost_sends()
    return len(services.dispatch_due())


@shared_task(ignore_result=True, acks_late=True)
def send_messages(message_ids: list[int]) -> dict[int, str]:
    """Send a batch of dispatched messages (see nurture.sending)."""
    return sending.send_messages(message_ids)


@shared_task(ignore_result=True, acks_late=True)
def send_message(message_id: int) -> str:
    """A single message, as published before sending went by batches; still accepted."""
    return sending.send_message(message_id)
