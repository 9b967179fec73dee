"""Writes to the CRM domain. Views, admin actions, tasks and other apps call these."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop, override

from crm.bulk import raise_to_latest
from crm.models import (
    Activity,
    Lead,
    LeadStatus,
    Notification,
    StatusChangeCause,
    Task,
    user_display_name,
)
from crm.signals import lead_reassigned, lead_status_changed

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
    """Save a timeline entry on `lead` now (or `at`), moving the lead's last activity."""
    activity = new_activity(lead, kind, summary, actor=actor, payload=payload, at=at)
    add_activities([activity])
    return activity


def add_activities(activities) -> list[Activity]:
    """Save timeline entries (from `new_activity`) in one INSERT, and move each lead's
    `last_activity_at` to its newest one. Every timeline entry is written through here (or
    `record_activity`), so the lists never group the timeline to find it."""
    activities = list(activities)
    if not activities:
        return activities
    Activity.objects.bulk_create(activities)
    newest = {}
    for activity in activities:
        if activity.lead_id not in newest or newest[activity.lead_id] < activity.created_at:
            newest[activity.lead_id] = activity.created_at
    raise_to_latest(Lead, "last_activity_at", list(newest), list(newest.values()))
    lead_field = Activity._meta.get_field("lead")
    for activity in activities:  # the caller's lead objects say so too
        if lead_field.is_cached(activity):
            lead = activity.lead
            if lead.last_activity_at < newest[lead.pk]:
                lead.last_activity_at = newest[lead.pk]
    return activities


def new_notification(
    user, message: str, params: dict | None = None, *, lead=None
) -> Notification | None:
    """What `notify` saves, not saved yet (for bulk_create); None without a user."""
    if user is None:
        return None
    params = {
        name: value if isinstance(value, int | float) else str(value)
        for name, value in (params or {}).items()
    }
    with override(settings.LANGUAGE_CODE):
        text = gettext(message)
    if params:
        text %= params
    return Notification(user=user, lead=lead, message=text, message_id=message, params=params)


def notify(user, message: str, params: dict | None = None, *, lead=None) -> Notification | None:
    """Tell `user` something, about `lead` if given. `message` is untranslated (mark it with
    gettext_noop), with %(name)s placeholders filled from `params`; it is kept untranslated
    with its values, and shown in each reader's language (and stored in the site's too)."""
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


def change_status_of_many(leads, code: str, *, by=None, reason: str = "") -> int:
    """Move each of `leads` to `code`, each in its own change (as `change_status`); returns how
    many moved."""
    return sum(change_status(lead, code, by=by, reason=reason) for lead in leads)


@transaction.atomic
def reassign(lead: Lead, user, *, by=None) -> bool:
    """Make `user` responsible for `lead`, with a timeline entry, and give them the open tasks
    the previous manager had on it; False if they already are."""
    locked = Lead.objects.select_for_update().get(pk=lead.pk)
    if locked.responsible_id == user.pk:
        return False
    now = timezone.now()
    Lead.objects.filter(pk=lead.pk).update(responsible=user, updated_at=now)
    # The next steps the old manager had on it go with the lead.
    Task.objects.filter(
        lead=lead, done_at__isnull=True, assigned_to_id=locked.responsible_id
    ).update(assigned_to=user)
    lead_reassigned.send(sender=Lead, lead_id=lead.pk, manager_id=user.pk)
    record_activity(
        lead,
        Activity.Kind.REASSIGNED,
        gettext_noop("Lead given to another manager"),
        actor=by,
        payload={
            "from": locked.responsible_id,
            "to": user.pk,
            "to_name": user_display_name(user),
        },
        at=now,
    )
    lead.responsible = user
    return True


def reassign_many(leads, user, *, by=None) -> int:
    return sum(reassign(lead, user, by=by) for lead in leads)


@transaction.atomic
def add_note(lead: Lead, text: str, *, by) -> Activity:
    """A note on the lead's timeline, in its writer's name, now."""
    return record_activity(lead, Activity.Kind.NOTE, text, actor=by)


@transaction.atomic
def update_lead(lead: Lead, *, by=None) -> Lead:
    """Save an edited lead's details (not its status: that is `change_status`); a change of
    responsible is a reassignment, with its timeline entry."""
    stored = Lead.objects.select_for_update().get(pk=lead.pk)
    new_responsible = lead.responsible
    lead.status_id = stored.status_id
    lead.responsible_id = stored.responsible_id
    lead.full_clean()
    lead.save()
    if new_responsible is not None and new_responsible.pk != stored.responsible_id:
        reassign(lead, new_responsible, by=by)
    return lead


def tell_owners_of_duplicates(lead: Lead, duplicates, *, by) -> None:
    """`lead` was saved though other leads have its email or phone: each of their managers but
    the one who saved it is told, so nobody's client is taken over silently."""
    for other in duplicates:
        if other.responsible_id and other.responsible_id != getattr(by, "pk", None):
            notify(
                other.responsible,
                gettext_noop(
                    "%(user)s saved a lead with the same email or phone as your lead %(lead)s."
                ),
                {"user": user_display_name(by), "lead": other.display_name},
                lead=other,
            )


@transaction.atomic
def create_task(lead: Lead, title: str, due_at, assigned_to, *, by) -> Task:
    """A next step on `lead`, with its timeline entry."""
    task = Task.objects.create(
        lead=lead, title=title, due_at=due_at, assigned_to=assigned_to, created_by=by
    )
    record_activity(
        lead,
        Activity.Kind.TASK,
        gettext_noop("Task set"),
        actor=by,
        payload={
            "task": task.pk,
            "title": title,
            "due": due_at.isoformat(),
            "assigned_to_name": user_display_name(assigned_to),
        },
    )
    return task


@transaction.atomic
def complete_task(task: Task, *, by) -> bool:
    """Mark `task` done, with its timeline entry; False if it already was."""
    now = timezone.now()
    if not Task.objects.filter(pk=task.pk, done_at__isnull=True).update(done_at=now, done_by=by):
        return False
    task.done_at, task.done_by = now, by
    record_activity(
        task.lead,
        Activity.Kind.TASK,
        gettext_noop("Task done"),
        actor=by,
        payload={"task": task.pk, "title": task.title, "done": True},
        at=now,
    )
    return True
