"""The calls page's views: the log, its CSV export, and the report. Thin: the filters are in
forms.py, the reads in selectors.py and telephony.calls.reports."""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse

from crm import paging
from crm.views.access import workspace_page
from telephony.calls import reports
from telephony.calls_page import chart, export, selectors
from telephony.calls_page.forms import LogFilterForm, ReportForm

CALLS_PER_PAGE = 50


def calls_page(view):
    """A workspace page that shows calls: for those who may see calls (else 403)."""

    @workspace_page
    @wraps(view)
    def checked(request, *args, **kwargs):
        if not request.user.has_perm("telephony.view_call"):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return checked


@calls_page
def call_log(request):
    filters = LogFilterForm(request.GET, user=request.user)
    valid = filters.is_valid()
    calls = selectors.call_log(request.user)
    calls = filters.filter(calls) if valid else calls.none()
    page = paging.page_of(calls, request.GET.get("page"), CALLS_PER_PAGE)
    context = {
        "filters": filters,
        "page": page,
        "entries": selectors.entries(request.user, page.object_list),
        "query_without_page": paging.query_without(request.GET, "page"),
    }
    return TemplateResponse(
        request, "telephony/calls/log.html", context, status=200 if valid else 400
    )


@calls_page
def call_log_csv(request):
    """The log with the same filters, every page of it, as a CSV file for Excel."""
    filters = LogFilterForm(request.GET, user=request.user)
    if not filters.is_valid():
        return call_log(request)
    calls = filters.filter(selectors.call_log(request.user))
    response = HttpResponse(
        export.as_csv(request.user, calls), content_type="text/csv; charset=utf-8"
    )
    today = reports.company_today()
    response["Content-Disposition"] = f'attachment; filename="calls-{today:%Y%m%d}.csv"'
    return response


@calls_page
def call_report(request):
    form = ReportForm(request.GET, user=request.user)
    context = {"filters": form}
    if form.is_valid():
        data = form.cleaned_data
        rows = reports.call_report(
            request.user, data["date_from"], data["date_to"], data["manager"]
        )
        days = selectors.per_day(rows, form.days())
        drawn = chart.calls_per_day(days)
        context.update(
            rows=[selectors.ReportLine.of(row) for row in rows],
            managers=selectors.per_manager(rows),
            total=selectors.ReportLine.of(reports.total(rows)),
            days=days,
            chart=drawn,
            chart_title=chart.title(data["date_from"], data["date_to"]),
            chart_description=chart.description(drawn),
        )
    return TemplateResponse(
        request, "telephony/calls/report.html", context, status=200 if form.is_valid() else 400
    )
