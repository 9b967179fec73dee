"""Writes to the CRM domain. Views, admin actions, tasks and other apps call these."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop, override

from crm.models import Activity, Lead, LeadStatus, Notification, StatusChangeCause
from crm.signals import lead_status_changed

User = get_user_model()


def new_activity(lead, kind, summary, *, actor=None, payload=None, at=None) -> Activity:
    """A timeline entry, not saved yet (for bulk_create)."""
    return Activity(
        lead=lead,
        kind=kind,
        summary=summary,
        actor=actor,
        payload=payload or {},
        created_at=at or timezone.now(),
    )


def record_activity(lead, kind, summary, *, actor=None, payload=None, at=None) -> Activity:
    activity = new_activity(lead, kind, summary, actor=actor, payload=payload, at=at)
    activity.save(force_insert=True)
    return activity


def new_notification(
    user, message: str, params: dict | None = None, *, lead=None
) -> Notification | None:
    """What `notify` saves, not saved yet (for bulk_create); None without a user."""
    if user is None:
        return None
    with override(settings.LANGUAGE_CODE):
        text = gettext(message)
    if params:
        text %= params
    return Notification(user=user, lead=lead, message=text)


def notify(user, message: str, params: dict | None = None, *, lead=None) -> Notification | None:
    """Tell `user` something, about `lead` if given. `message` is untranslated (mark it with
    gettext_noop), with %(name)s placeholders filled from `params`; it is stored in the site's
    language, since it is written before anybody reads it."""
    notification = new_notification(user, message, params, lead=lead)
    if notification is not None:
        notification.save(force_insert=True)
    return notification


def _announce_after_commit(lead_id, old_code, new_code, *, by, cause, reason):
    transaction.on_commit(
        lambda: lead_status_changed.send(
            sender=Lead,
            lead_id=lead_id,
            old_code=old_code,
            new_code=new_code,
            by=by,
            cause=cause,
            reason=reason,
        )
    )


@transaction.atomic
def create_lead(lead: Lead, *, by=None) -> Lead:
    """Save a new, unsaved `lead` with its first timeline entry, and announce its status."""
    if lead.status_id is None:
        lead.status = LeadStatus.objects.get(code=LeadStatus.NEW)
    status = lead.status
    lead.full_clean()
    lead.save()
    record_activity(
        lead,
        Activity.Kind.CREATED,
        gettext_noop("Lead created"),
        actor=by,
        payload={"status": status.code},
    )
    _announce_after_commit(
        lead.pk, None, status.code, by=by, cause=StatusChangeCause.PERSON, reason=""
    )
    return lead


@transaction.atomic
def change_status(
    lead: Lead,
    code: str,
    *,
    by=None,
    reason: str = "",
    cause: StatusChangeCause = StatusChangeCause.PERSON,
) -> bool:
    """Move `lead` to the status `code`. The one way a status changes.

    `cause` says what made it change (a person, or the lead writing back or calling: nurturing
    stops with that reason); `reason` is a person's own words, only ever shown.

    Returns False and does nothing when the lead already has that status. Otherwise the change
    and its timeline entry are saved together, and `lead_status_changed` is sent after commit.
    """
    new_status = LeadStatus.objects.get(code=code)
    locked = Lead.objects.select_for_update().select_related("status").get(pk=lead.pk)
    old_status = locked.status
    if old_status.pk == new_status.pk:
        return False
    now = timezone.now()
    Lead.objects.filter(pk=lead.pk).update(status=new_status, status_changed_at=now, updated_at=now)
    record_activity(
        lead,
        Activity.Kind.STATUS_CHANGE,
        gettext_noop("Status changed"),
        actor=by,
        payload={
            "from": old_status.code,
            "to": new_status.code,
            "cause": StatusChangeCause(cause).value,
            "reason": reason,
        },
        at=now,
    )
    lead.status, lead.status_changed_at = new_status, now
    _announce_after_commit(
        lead.pk, old_status.code, new_status.code, by=by, cause=cause, reason=reason
    )
    return True
