"""A copy of everything the CRM holds about a lead, for the person it is about: crm's own part
(the lead, its timeline, the notifications about it) and what every other app adds through
`crm.privacy.lead_export`. Only a supervisor exports, and every export is on the lead's
admin History, which names the lead by its number only."""

import json
from datetime import UTC, datetime

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import content_disposition_header
from django.utils.translation import gettext, override
from django.utils.translation import gettext_lazy as _

from crm.models import Lead, user_display_name
from crm.privacy import lead_export
from crm.selectors import can_see_all_leads, with_status_names

FORMAT_VERSION = 1
CRM_SECTIONS = ("lead", "timeline", "tasks", "notifications")


def isoformat(moment: datetime | None) -> str | None:
    """A stored moment as the export writes it: ISO 8601 in UTC."""
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def display_name(user) -> str | None:
    """A colleague as an export names them: by display name and nothing else."""
    return user_display_name(user) if user is not None else None


def export_lead(lead: Lead, *, by) -> dict:
    """Everything held about `lead`, JSON-ready, with the export recorded on its History.

    Texts are in the active language, as the supervisor reads them. Raises PermissionDenied
    unless `by` sees every lead."""
    if not can_see_all_leads(by):
        raise PermissionDenied
    data = {
        "format": {"version": FORMAT_VERSION, "exported_at": isoformat(timezone.now())},
        "lead": _details(lead),
        "timeline": _timeline(lead),
        "tasks": _tasks(lead),
        "notifications": _notifications(lead),
    }
    for receiver, sections in lead_export.send(sender=Lead, lead=lead):
        clash = data.keys() & sections.keys()
        if clash:
            raise ImproperlyConfigured(f"{receiver} exports sections already taken: {clash}")
        data.update(sections)
    _log_export(lead, by)
    return data


def _details(lead: Lead) -> dict:
    return {
        "id": lead.pk,
        "title": lead.title,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "email": lead.email,
        "phone": lead.phone,
        "phone_as_typed": lead.phone_raw,
        "company": lead.company,
        "source": lead.source,
        "status": {"code": lead.status.code, "name": lead.status.name},
        "status_changed_at": isoformat(lead.status_changed_at),
        "responsible": display_name(lead.responsible),
        "do_not_email": lead.do_not_email,
        "email_status": lead.email_status,
        "language": lead.language,
        "time_zone": lead.time_zone,
        "created_at": isoformat(lead.created_at),
        "updated_at": isoformat(lead.updated_at),
    }


def _timeline(lead: Lead) -> list[dict]:
    entries = with_status_names(lead.activities.select_related("actor__profile")).order_by(
        "created_at", "id"
    )
    return [
        {
            "kind": entry.kind,
            "text": entry.description,
            "by": display_name(entry.actor),
            "details": entry.payload,
            "at": isoformat(entry.created_at),
        }
        for entry in entries
    ]


def _tasks(lead: Lead) -> list[dict]:
    tasks = lead.tasks.select_related("assigned_to__profile").order_by("created_at", "id")
    return [
        {
            "what": task.title,
            "for": display_name(task.assigned_to),
            "due": isoformat(task.due_at),
            "done_at": isoformat(task.done_at),
            "at": isoformat(task.created_at),
        }
        for task in tasks
    ]


def _notifications(lead: Lead) -> list[dict]:
    notifications = lead.notifications.select_related("user__profile").order_by("created_at", "id")
    return [
        {
            "to": display_name(notification.user),
            "message": notification.message,
            "read": notification.is_read,
            "at": isoformat(notification.created_at),
        }
        for notification in notifications
    ]


def _log_export(lead: Lead, by) -> None:
    # Written before anybody reads it, so in the site's language (as notifications are); and
    # without the person's name, which the audit must not keep.
    with override(settings.LANGUAGE_CODE):
        message = gettext("Exported the lead's data")
    LogEntry.objects.create(
        user=by,
        content_type=ContentType.objects.get_for_model(Lead),
        object_id=str(lead.pk),
        object_repr=f"Lead #{lead.pk}",
        action_flag=CHANGE,
        change_message=message,
    )


@admin.action(description=_("Download all data held (JSON)"))
def download_export(modeladmin, request, queryset):
    """The admin action: one selected lead's data as lead-<id>.json, several as a list in
    leads.json. Supervisors only: anybody else gets 403 Forbidden and nothing is logged."""
    if not can_see_all_leads(request.user):
        raise PermissionDenied
    leads = list(queryset.select_related("status", "responsible__profile").order_by("pk"))
    with transaction.atomic():
        exports = [export_lead(lead, by=request.user) for lead in leads]
    if len(exports) == 1:
        content, filename = exports[0], f"lead-{leads[0].pk}.json"
    else:
        content, filename = exports, "leads.json"
    response = HttpResponse(
        json.dumps(content, ensure_ascii=False, indent=2),
        content_type="application/json; charset=utf-8",
        headers={"Content-Disposition": content_disposition_header(True, filename)},
    )
    add_never_cache_headers(response)
    return response
