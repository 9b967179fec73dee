"""Next steps: set from the lead card, done from the card or Today."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from crm import selectors, services
from crm.forms import TaskForm
from crm.views.access import workspace_page
from crm.views.card import card_context


@workspace_page
@require_POST
def add_task(request, lead_id):
    lead = get_object_or_404(selectors.leads_visible_to(request.user), pk=lead_id)
    form = TaskForm(request.POST, user=request.user, lead=lead)
    if not form.is_valid():
        return TemplateResponse(
            request, "crm/card/detail.html", card_context(request, lead, task_form=form), status=400
        )
    data = form.cleaned_data
    services.create_task(lead, data["title"], data["due_at"], data["assigned_to"], by=request.user)
    messages.success(request, _("Task set."))
    return redirect("crm:lead_detail", lead_id=lead.pk)


@workspace_page
@require_POST
def complete_task(request, task_id):
    task = get_object_or_404(selectors.tasks_visible_to(request.user), pk=task_id)
    if services.complete_task(task, by=request.user):
        messages.success(request, _("Done: %(task)s.") % {"task": task.title})
    back = request.POST.get("next", "")
    if back == "today":
        return redirect("crm:today")
    return redirect("crm:lead_detail", lead_id=task.lead_id)
