"""Writes on enrollments: a lead starts a sequence, stops it (halts) or completes it, and the
manager hears about it. Dispatching is in `nurture.dispatch`, sending in `nurture.sending`."""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from crm.models import Activity, Lead, Notification, StatusChangeCause
from crm.services import new_activity, new_notification, notify, record_activity
from nurture import schedule
from nurture.models import Enrollment, OutboundMessage, Sequence

HaltReason = Enrollment.HaltReason


def tell_manager(lead, message_template: str, /, **params) -> None:
    """Notify the lead's responsible manager, in the site's language."""
    notify(lead.responsible, message_template, params, lead=lead)


def manager_notification(lead, message_template: str, /, **params) -> Notification | None:
    """What `tell_manager` saves, not saved yet (for bulk_create)."""
    return new_notification(lead.responsible, message_template, params, lead=lead)


@transaction.atomic
def enroll(lead, sequence: Sequence, *, now: datetime | None = None) -> Enrollment | None:
    """Start `sequence` for `lead` from its first message; None if one is already running."""
    now = now or timezone.now()
    send_at, _ = schedule.first_send(sequence, lead, now, schedule.company_calendar())
    try:
        with transaction.atomic():
            enrollment = Enrollment.objects.create(
                lead=lead, sequence=sequence, enrolled_at=now, next_send_at=send_at
            )
    except IntegrityError:
        return None
    return enrollment


def enroll_for_status(lead, status_code: str) -> list[Enrollment]:
    sequences = Sequence.objects.filter(is_active=True, enrolling_status__code=status_code)
    return [e for e in (enroll(lead, sequence) for sequence in sequences) if e]


@transaction.atomic
def halt(enrollments, reason: str, *, now: datetime | None = None) -> int:
    """Stop the active ones among `enrollments` for good; messages not yet sent are cancelled.

    The enrollment rows are locked first, so a send that is checking them right now either
    finishes before this commits or sees the halt and does not go out.
    """
    now = now or timezone.now()
    ids = list(
        enrollments.select_for_update()
        .filter(state=Enrollment.State.ACTIVE)
        .values_list("pk", flat=True)
    )
    if not ids:
        return 0
    Enrollment.objects.filter(pk__in=ids).update(
        state=Enrollment.State.HALTED, halt_reason=reason, next_send_at=None, ended_at=now
    )
    OutboundMessage.objects.filter(
        enrollment_id__in=ids,
        state__in=[OutboundMessage.State.QUEUED, OutboundMessage.State.RETRY],
    ).update(state=OutboundMessage.State.CANCELLED, retry_at=None)
    return len(ids)


def halt_for_lead(lead_id: int, reason: str) -> int:
    return halt(Enrollment.objects.filter(lead_id=lead_id), reason)


def halt_for_status_change(lead_id: int, old_code: str, reason: str) -> int:
    """The lead left `old_code`: the sequences that status enrolled it in stop."""
    return halt(
        Enrollment.objects.filter(lead_id=lead_id, sequence__enrolling_status__code=old_code),
        reason,
    )


@transaction.atomic
def unsubscribe(lead) -> None:
    """The lead asked for no more email: mark the address and stop every sequence."""
    mark_address(lead, Lead.EmailStatus.UNSUBSCRIBED, HaltReason.UNSUBSCRIBE)


@transaction.atomic
def mark_address(lead, email_status: str, reason: str, *, details: dict | None = None) -> int:
    """The lead's address must not be emailed again (unsubscribed, bounced, complained):
    mark it, stop the lead's sequences, note it on the timeline and tell the manager."""
    Lead.objects.filter(pk=lead.pk).update(do_not_email=True, email_status=email_status)
    lead.do_not_email, lead.email_status = True, email_status
    halted = halt(Enrollment.objects.filter(lead_id=lead.pk), reason)
    record_activity(
        lead,
        Activity.Kind.NOTE,
        gettext_noop("Email address marked not to be emailed"),
        payload={"email_status": email_status, "halted": halted, **(details or {})},
    )
    if halted:
        tell_manager(
            lead,
            gettext_noop("Nurturing of %(lead)s stopped: %(reason)s."),
            lead=lead.display_name,
            reason=HaltReason(reason).label,
        )
    return halted


# Why nurturing stops when a status change had this cause; a person's change is a status change.
HALT_REASON_FOR_CAUSE = {
    StatusChangeCause.REPLY: HaltReason.REPLY,
    StatusChangeCause.CALL: HaltReason.CALL,
}


def halt_reason_for(cause: str) -> str:
    """The halt reason of nurturing stopped by a status change with this `cause`."""
    return HALT_REASON_FOR_CAUSE.get(cause, HaltReason.STATUS_CHANGE)


@transaction.atomic
def restart(enrollment: Enrollment, *, now: datetime | None = None) -> Enrollment | None:
    """A fresh enrollment in the same sequence, from its first message; None (and nothing
    changed) when the lead is no longer in the status that enrolls it."""
    lead = Lead.objects.select_for_update().get(pk=enrollment.lead_id)
    if lead.status_id != enrollment.sequence.enrolling_status_id:
        return None
    halt(Enrollment.objects.filter(pk=enrollment.pk), HaltReason.MANUAL, now=now)
    return enroll(lead, enrollment.sequence, now=now)


def complete_if_last(messages: list[OutboundMessage]) -> None:
    """The enrollments whose last message is among `messages` (sent, failed or unknown) are
    completed, and each manager is told the lead never answered."""
    last = {
        m.enrollment_id: m.enrollment
        for m in messages
        if m.number >= m.enrollment.sequence.max_messages
    }
    if not last:
        return
    finished = list(
        Enrollment.objects.select_for_update()
        .filter(pk__in=last, state=Enrollment.State.ACTIVE)
        .values_list("pk", flat=True)
    )
    if not finished:
        return
    now = timezone.now()
    Enrollment.objects.filter(pk__in=finished).update(
        state=Enrollment.State.COMPLETED, ended_at=now, next_send_at=None
    )
    notifications, activities = [], []
    for enrollment in (last[pk] for pk in finished):
        lead = enrollment.lead
        notifications.append(
            manager_notification(
                lead,
                gettext_noop(
                    "%(lead)s got all %(total)d emails of “%(sequence)s” and never answered."
                ),
                lead=lead.display_name,
                total=enrollment.sequence.max_messages,
                sequence=enrollment.sequence.name,
            )
        )
        activities.append(
            new_activity(
                lead,
                Activity.Kind.NOTE,
                gettext_noop("Nurturing completed without an answer"),
                payload={"enrollment": enrollment.pk},
                at=now,
            )
        )
    Notification.objects.bulk_create([n for n in notifications if n is not None])
    Activity.objects.bulk_create(activities)
