"""The pipeline: a column per status with its count and its most urgent leads; a lead moves
by drag and drop or by its "Move to…" control, through crm.services.change_status."""

from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from crm import selectors, services
from crm.forms import MoveToStatusForm
from crm.models import LeadStatus
from crm.views.access import workspace_page

COLUMN_LENGTH = 20


@workspace_page
def pipeline(request):
    leads = selectors.leads_visible_to(request.user)
    columns = selectors.pipeline_columns(leads, length=COLUMN_LENGTH)
    statuses = [column.status for column in columns]  # every status, in order
    return TemplateResponse(
        request,
        "crm/pipeline/board.html",
        {
            "columns": columns,
            "statuses_for_move": statuses,
            "count_cap": selectors.COLUMN_COUNT_CAP,
        },
    )


@workspace_page
def pipeline_column(request, code):
    """More of one column, from `?after=<n>` (shown on scroll)."""
    status = get_object_or_404(LeadStatus, code=code)
    offset = _non_negative(request.GET.get("after"))
    leads = selectors.leads_visible_to(request.user)
    column = selectors.pipeline_column(leads, status, offset=offset, length=COLUMN_LENGTH)
    return TemplateResponse(
        request, "crm/pipeline/_cards.html", {"column": column, "statuses_for_move": _statuses()}
    )


@workspace_page
@require_POST
def move(request, lead_id):
    lead = get_object_or_404(selectors.leads_visible_to(request.user), pk=lead_id)
    form = MoveToStatusForm(request.POST)
    if not form.is_valid():
        return TemplateResponse(
            request, "crm/pipeline/_moved.html", {"error": _("Choose a status.")}, status=400
        )
    status = form.cleaned_data["status"]
    services.change_status(lead, status.code, by=request.user, reason=form.cleaned_data["reason"])
    if request.htmx:
        message = _("%(lead)s moved to “%(status)s”.") % {
            "lead": lead.display_name,
            "status": status.name,
        }
        return TemplateResponse(request, "crm/pipeline/_moved.html", {"message": message})
    return redirect("crm:pipeline")


def _non_negative(value) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _statuses():
    return list(LeadStatus.objects.order_by("order"))
