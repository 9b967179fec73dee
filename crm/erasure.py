"""A supervisor erases a person: every app removes or anonymises what it holds about the lead
(crm.privacy.lead_erasure), then crm its own part and the lead itself, in one transaction. One
audit entry stays, with counts only."""

from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from crm.models import Activity, Lead, Notification
from crm.privacy import lead_erasure
from crm.selectors import can_see_all_leads


def forget_admin_log(model, object_ids) -> int:
    """Delete the admin's log entries about these objects of `model`: their object_repr and
    change_message name what the object named. Returns how many."""
    object_ids = [str(pk) for pk in object_ids]
    if not object_ids:
        return 0
    deleted, _ = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(model, for_concrete_model=False),
        object_id__in=object_ids,
    ).delete()
    return deleted


@transaction.atomic
def erase_lead(lead: Lead, *, by) -> dict:
    """Remove or anonymise everything that identifies `lead`, across every app, and the lead
    itself; write one audit entry (no personal data in it) and return {what: how many}.

    Raises PermissionDenied for anybody but a supervisor."""
    if not can_see_all_leads(by):
        raise PermissionDenied
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    lead_id = lead.pk
    counts = {}
    for _receiver, part in lead_erasure.send(sender=Lead, lead=lead, by=by):
        counts.update(part or {})
    counts["crm.activities"] = Activity.objects.filter(lead=lead).delete()[0]
    counts["crm.notifications"] = Notification.objects.filter(lead=lead).delete()[0]
    audit_repr = f"Lead #{lead_id} (erased)"
    # Keeping an earlier erasure's audit entry: SQLite may give a new lead a deleted lead's id.
    counts["crm.admin_log_entries"] = (
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Lead), object_id=str(lead_id)
        )
        .exclude(action_flag=DELETION, object_repr=audit_repr)
        .delete()[0]
    )
    Lead.objects.filter(pk=lead_id).delete()
    counts["crm.leads"] = 1
    LogEntry.objects.create(
        user=by,
        content_type=ContentType.objects.get_for_model(Lead),
        object_id=str(lead_id),
        object_repr=audit_repr,
        action_flag=DELETION,
        change_message=erasure_summary(counts),
    )
    return counts


def erasure_summary(counts: dict) -> str:
    """The audit entry's message: what was erased, as counts (the same in every language, as
    the admin's own log is kept)."""
    return "Erased: " + ", ".join(f"{what} {count}" for what, count in sorted(counts.items()))


@admin.action(description=_("Erase this person…"))
def erase_person(modeladmin, request, queryset):
    """The admin action: a confirmation page, then each selected lead erased. Only supervisors;
    anybody else gets 403 and nothing changes."""
    if not can_see_all_leads(request.user):
        raise PermissionDenied
    if request.POST.get("confirm") == "yes":
        erased = 0
        for lead in queryset:
            erase_lead(lead, by=request.user)
            erased += 1
        modeladmin.message_user(
            request,
            ngettext("%(count)d person erased.", "%(count)d people erased.", erased)
            % {"count": erased},
            messages.SUCCESS,
        )
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Erase this person?"),
        "opts": modeladmin.model._meta,
        "leads": queryset,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/crm/lead/erase_person.html", context)
