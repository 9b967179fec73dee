"""Writes on enrollments: a lead starts a sequence, stops it (halts) or completes it, and the
manager hears about it; and the suppression list, whose addresses are not emailed again.
Dispatching is in `nurture.dispatch`, sending in `nurture.sending`."""

from collections import Counter, defaultdict
from datetime import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop, override

from crm.models import Activity, Lead, Notification, StatusChangeCause, user_display_name
from crm.selectors import can_see_all_leads
from crm.services import add_activities, new_activity, new_notification, notify
from nurture import schedule
from nurture.models import Enrollment, OutboundMessage, Sequence, Suppression, normalize_address

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
    return len(_halt(enrollments, reason, now=now))


def _halt(enrollments, reason: str, *, now: datetime | None = None) -> list[tuple[int, int]]:
    """`halt`, returning the (enrollment, lead) ids it stopped."""
    now = now or timezone.now()
    halted = list(
        enrollments.select_for_update()
        .filter(state=Enrollment.State.ACTIVE)
        .values_list("pk", "lead_id")
    )
    if not halted:
        return []
    ids = [pk for pk, _ in halted]
    Enrollment.objects.filter(pk__in=ids).update(
        state=Enrollment.State.HALTED, halt_reason=reason, next_send_at=None, ended_at=now
    )
    OutboundMessage.objects.filter(
        enrollment_id__in=ids,
        state__in=[OutboundMessage.State.QUEUED, OutboundMessage.State.RETRY],
    ).update(state=OutboundMessage.State.CANCELLED, retry_at=None)
    return halted


def halt_for_lead(lead_id: int, reason: str) -> int:
    return halt(Enrollment.objects.filter(lead_id=lead_id), reason)


def halt_for_status_change(lead_id: int, old_code: str, reason: str) -> int:
    """The lead left `old_code`: the sequences that status enrolled it in stop."""
    return halt(
        Enrollment.objects.filter(lead_id=lead_id, sequence__enrolling_status__code=old_code),
        reason,
    )


# --- The suppression list: addresses that are not emailed again ------------------------------

# What a suppression marks on the leads with its address (`Lead.email_status`).
EMAIL_STATUS_FOR = {
    Suppression.Reason.UNSUBSCRIBE: Lead.EmailStatus.UNSUBSCRIBED,
    Suppression.Reason.BOUNCE: Lead.EmailStatus.BOUNCED,
    Suppression.Reason.COMPLAINT: Lead.EmailStatus.COMPLAINED,
}


def unsubscribe(message: OutboundMessage) -> Suppression | None:
    """Somebody followed the unsubscribe link of `message`: the address it went to is not
    emailed again. None (and nothing written) when that address is already suppressed."""
    lead = message.enrollment.lead
    return suppress_address(
        message.to_email or lead.email,
        Suppression.Reason.UNSUBSCRIBE,
        details={"message": message.pk, "lead": lead.pk},
    )


def mark_address(lead, email_status: str, reason: str, *, details: dict | None = None) -> int:
    """The lead's address must not be emailed again (unsubscribed, bounced, complained): it is
    suppressed for every lead that has it (see `suppress_address`). `reason` is the halt
    reason (bounce, complaint or unsubscribe); `email_status` follows from it. Returns how many
    enrollments stopped: none when the address was already suppressed."""
    suppression = suppress_address(
        lead.email, Suppression.Reason(reason), details={"lead": lead.pk, **(details or {})}
    )
    if suppression is not None:
        lead.do_not_email, lead.email_status = True, EMAIL_STATUS_FOR[suppression.reason]
    return suppression.halted if suppression is not None else 0


@transaction.atomic
def suppress_address(
    address: str, reason: str, *, details: dict | None = None, now: datetime | None = None
) -> Suppression | None:
    """Nobody with `address` is emailed again: the address goes on the suppression list, and
    every lead that has it is marked do-not-email with the reason's email status, its
    nurturing stops with that reason, and a timeline entry says so; each of their managers is
    told once. The dispatcher and the sender look the list up themselves, so a lead given the
    address later, or whose do-not-email is unticked, is not emailed either.

    Returns the new suppression (with `halted`: how many enrollments stopped); None, with
    nothing written at all, when the address is empty or already suppressed (for this reason or
    another: a replayed unsubscribe, a bounce reported twice, a complaint after an unsubscribe).
    """
    address, reason = normalize_address(address), Suppression.Reason(reason)
    if not address or Suppression.objects.active().filter(address=address).exists():
        return None
    now = now or timezone.now()
    try:
        with transaction.atomic():
            suppression = Suppression.objects.create(
                address=address, reason=reason, details=details or {}, created_at=now
            )
    except IntegrityError:  # the same address, suppressed at this moment by another event
        return None
    # Lock order everywhere: lead, then enrollment, then message. Writing the lead rows is also
    # what a send waiting for their locks reads again (its look at the list may predate this).
    leads = list(
        Lead.objects.select_for_update(of=("self",))
        .select_related("responsible")
        .filter(email=address)
        .order_by("pk")
    )
    email_status = EMAIL_STATUS_FOR[reason]
    Lead.objects.filter(pk__in=[lead.pk for lead in leads]).update(
        do_not_email=True, email_status=email_status, updated_at=now
    )
    halted = _halt(Enrollment.objects.filter(lead__in=leads), HaltReason(reason), now=now)
    suppression.halted = len(halted)
    halted_per_lead = Counter(lead_id for _, lead_id in halted)
    add_activities(
        new_activity(
            lead,
            Activity.Kind.NOTE,
            gettext_noop("Email address marked not to be emailed"),
            payload={
                "suppression": suppression.pk,
                "address": address,
                "email_status": email_status,
                "halted": halted_per_lead[lead.pk],
                **suppression.details,
            },
            at=now,
        )
        for lead in leads
    )
    _tell_each_manager(
        leads,
        gettext_noop("Emails to %(address)s stopped: %(reason)s (%(leads)s)."),
        address=address,
        reason=reason.label,
    )
    return suppression


@transaction.atomic
def lift_suppression(
    suppression: Suppression, *, by, reason: str, now: datetime | None = None
) -> bool:
    """A supervisor lets the address be emailed again, saying why. Every lead with the address
    gets a timeline entry and its email status cleared; its do-not-email stays as it is and
    nobody is enrolled again: each lead's manager decides that. False when it was already
    lifted (nothing written).

    Raises PermissionDenied for anybody but a supervisor, ValidationError without a reason.
    """
    if not can_see_all_leads(by):
        raise PermissionDenied
    reason = reason.strip()
    if not reason:
        raise ValidationError(_("Say why the address may be emailed again."), code="required")
    now = now or timezone.now()
    locked = Suppression.objects.select_for_update().get(pk=suppression.pk)
    if locked.lifted_at is not None:
        return False
    leads = list(
        Lead.objects.select_for_update(of=("self",))
        .select_related("responsible")
        .filter(email=locked.address)
        .order_by("pk")
    )
    locked.lifted_at, locked.lifted_by, locked.lift_reason = now, by, reason
    locked.save(update_fields=["lifted_at", "lifted_by", "lift_reason"])
    suppression.lifted_at, suppression.lifted_by, suppression.lift_reason = now, by, reason
    Lead.objects.filter(pk__in=[lead.pk for lead in leads]).update(email_status="", updated_at=now)
    add_activities(
        new_activity(
            lead,
            Activity.Kind.NOTE,
            gettext_noop("Email address may be emailed again"),
            actor=by,
            payload={
                "suppression": locked.pk,
                "address": locked.address,
                "suppressed_for": locked.reason,
                "why": reason,
                "do_not_email": lead.do_not_email,
            },
            at=now,
        )
        for lead in leads
    )
    _tell_each_manager(
        leads,
        gettext_noop(
            "%(by)s lifted the suppression of %(address)s (%(why)s): untick “do not email” "
            "on %(leads)s to email them again."
        ),
        address=locked.address,
        by=user_display_name(by),
        why=reason,
    )
    return True


def _tell_each_manager(leads, message_template: str, /, **params) -> None:
    """One notification per responsible manager, naming their leads among `leads`."""
    with override(settings.LANGUAGE_CODE):  # a label among the params: the message's language
        params = {name: str(value) for name, value in params.items()}
    by_manager = defaultdict(list)
    for lead in leads:
        if lead.responsible_id is not None:
            by_manager[lead.responsible_id].append(lead)
    notifications = [
        manager_notification(
            own[0], message_template, leads=", ".join(lead.display_name for lead in own), **params
        )
        for own in by_manager.values()
    ]
    longest = Notification._meta.get_field("message").max_length
    for notification in notifications:  # a long reason, or many leads with one address
        notification.message = Truncator(notification.message).chars(longest)
    Notification.objects.bulk_create(notifications)


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
    add_activities(activities)
