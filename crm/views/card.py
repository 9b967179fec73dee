"""The lead card: details, status buttons, the timeline, notes, and what other apps add
(crm.lead_page); the new-lead and edit forms."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from crm import lead_page, selectors, services
from crm.forms import LeadForm, MoveToStatusForm, NoteTextForm, TaskForm
from crm.models import LeadStatus, user_display_name
from crm.views.access import workspace_page

TIMELINE_LENGTH = 50


def _visible_lead(request, lead_id):
    leads = selectors.leads_visible_to(request.user).select_related(
        "status", "responsible__profile"
    )
    return get_object_or_404(leads, pk=lead_id)


def _timeline_context(request, lead, before=None) -> dict:
    entries, more = _timeline(lead, before)
    return {"entries": entries, "more": more, "details": lead_page.details_for(request, entries)}


def _timeline(lead, before=None):
    """The newest entries, or those older than the entry `before` (the last one shown): in the
    timeline's own order, when then id, since an entry is not always written when it happened
    (a letter carries the time it was sent)."""
    entries = selectors.with_status_names(lead.activities.select_related("actor__profile"))
    last_shown = lead.activities.filter(pk=before).first() if before else None
    if last_shown is not None:
        entries = entries.filter(
            Q(created_at__lt=last_shown.created_at)
            | Q(created_at=last_shown.created_at, pk__lt=last_shown.pk)
        )
    entries = list(entries.order_by("-created_at", "-pk")[: TIMELINE_LENGTH + 1])
    return entries[:TIMELINE_LENGTH], len(entries) > TIMELINE_LENGTH


@workspace_page
def lead_detail(request, lead_id):
    lead = _visible_lead(request, lead_id)
    if request.htmx and request.GET.get("before"):
        timeline = _timeline_context(request, lead, before=_int_or_none(request.GET["before"]))
        return TemplateResponse(
            request, "crm/card/_timeline_entries.html", {"lead": lead, **timeline}
        )
    return TemplateResponse(request, "crm/card/detail.html", card_context(request, lead))


def card_context(request, lead, **extra):
    panels = lead_page.panels_for(request, lead, lead_page.CARD)
    return {
        "lead": lead,
        **_timeline_context(request, lead),
        "statuses": LeadStatus.objects.order_by("order"),
        "status_form": MoveToStatusForm(),
        "note_form": NoteTextForm(),
        "task_form": TaskForm(user=request.user, lead=lead),
        "now": timezone.now(),
        "open_tasks": lead.tasks.filter(done_at__isnull=True)
        .select_related("assigned_to__profile")
        .order_by("due_at", "pk"),
        "panels": [
            panel.render(panel.card_template, request, lead)
            for panel in panels
            if panel.card_template
        ],
        "responsible_name": user_display_name(lead.responsible) if lead.responsible else "",
        **extra,
    }


@workspace_page
@require_POST
def change_status(request, lead_id):
    lead = _visible_lead(request, lead_id)
    form = MoveToStatusForm(request.POST)
    if not form.is_valid():
        return TemplateResponse(
            request,
            "crm/card/detail.html",
            card_context(request, lead, status_form=form),
            status=400,
        )
    status = form.cleaned_data["status"]
    if services.change_status(
        lead, status.code, by=request.user, reason=form.cleaned_data["reason"]
    ):
        messages.success(request, _("Moved to “%(status)s”.") % {"status": status.name})
    return redirect("crm:lead_detail", lead_id=lead.pk)


@workspace_page
@require_POST
def add_note(request, lead_id):
    lead = _visible_lead(request, lead_id)
    form = NoteTextForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            return TemplateResponse(
                request, "crm/card/_note_form.html", {"lead": lead, "note_form": form}, status=400
            )
        return TemplateResponse(
            request,
            "crm/card/detail.html",
            card_context(request, lead, note_form=form),
            status=400,
        )
    services.add_note(lead, form.cleaned_data["text"], by=request.user)
    if request.htmx:
        return TemplateResponse(
            request,
            "crm/card/_timeline.html",
            {"lead": lead, **_timeline_context(request, lead), "note_form": NoteTextForm()},
        )
    messages.success(request, _("Note added."))
    return redirect("crm:lead_detail", lead_id=lead.pk)


@workspace_page
def lead_new(request):
    if not request.user.has_perm("crm.add_lead"):
        raise PermissionDenied
    # The screen pop's "create a lead" brings the caller's number.
    initial = {"phone_raw": request.GET.get("phone_raw", "")[:50]}
    form = LeadForm(request.POST or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        lead = form.save(commit=False)
        if "responsible" not in form.fields:
            lead.responsible = request.user
        services.create_lead(lead, by=request.user)
        services.tell_owners_of_duplicates(lead, form.duplicates, by=request.user)
        messages.success(request, _("Lead created."))
        return redirect("crm:lead_detail", lead_id=lead.pk)
    status = 400 if request.method == "POST" else 200
    return TemplateResponse(
        request, "crm/card/form.html", _form_context(request, form), status=status
    )


@workspace_page
def lead_edit(request, lead_id):
    lead = _visible_lead(request, lead_id)
    if not request.user.has_perm("crm.change_lead"):
        raise PermissionDenied
    form = LeadForm(request.POST or None, instance=lead, user=request.user)
    if request.method == "POST" and form.is_valid():
        lead = services.update_lead(form.save(commit=False), by=request.user)
        services.tell_owners_of_duplicates(lead, form.duplicates, by=request.user)
        messages.success(request, _("Saved."))
        return redirect("crm:lead_detail", lead_id=lead.pk)
    status = 400 if request.method == "POST" else 200
    return TemplateResponse(
        request, "crm/card/form.html", _form_context(request, form, lead=lead), status=status
    )


def _form_context(request, form, lead=None):
    visible = set(
        selectors.leads_visible_to(request.user)
        .filter(pk__in=[duplicate.pk for duplicate in form.duplicates])
        .values_list("pk", flat=True)
    )
    duplicates = [
        {
            "lead": duplicate,
            "visible": duplicate.pk in visible,
            "manager": user_display_name(duplicate.responsible) if duplicate.responsible else "",
        }
        for duplicate in form.duplicates
    ]
    return {"form": form, "lead": lead, "duplicates": duplicates}


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
