"""The lead list (search, filters, sorting, pages, bulk actions) and the new-lead form."""

from django.contrib import messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from crm import lead_page, paging, selectors, services
from crm.forms import BulkLeadsForm, LeadFilterForm, share_choices
from crm.models import user_display_name
from crm.views.access import workspace_page

LEADS_PER_PAGE = 25
# A first page reads up to this many more ids, to count a list that ends within them (searches
# mostly do, a common surname among 100,000 leads a couple of thousand times) without passing
# over it a second time.
READ_AHEAD = 2000


@workspace_page
def lead_list(request):
    filters = LeadFilterForm(
        request.GET, user=request.user, extra_filters=lead_page.list_filters_for(request)
    )
    leads = selectors.leads_visible_to(request.user)
    valid = filters.is_valid()
    leads = filters.filter(leads) if valid else leads.none()
    page = paging.page_of(
        leads.values_list("pk", flat=True),
        request.GET.get("page"),
        LEADS_PER_PAGE,
        read_ahead=READ_AHEAD,
    )
    page.object_list = selectors.list_rows(request.user, list(page.object_list))
    bulk = BulkLeadsForm(None, user=request.user)
    share_choices(filters.fields["status"], bulk.fields["status"])
    if "manager" in filters.fields:
        share_choices(filters.fields["manager"], bulk.fields["responsible"])
    context = {
        "filters": filters,
        "page": page,
        "row_notes": lead_page.row_notes_for(request, page.object_list),
        "bulk": bulk,
        "query_without_page": paging.query_without(request.GET, "page"),
        "sees_everyone": selectors.can_see_all_leads(request.user),
    }
    template = "crm/leads/_results.html" if request.htmx else "crm/leads/list.html"
    return TemplateResponse(request, template, context, status=200 if valid else 400)


@workspace_page
@require_POST
def bulk_action(request):
    form = BulkLeadsForm(request.POST, user=request.user)
    if not form.is_valid():
        for error in form.errors.values():
            messages.error(request, " ".join(error))
        return redirect(_back_to_list(request))
    data, leads = form.cleaned_data, form.cleaned_data["leads"]
    if data["status"]:
        moved = services.change_status_of_many(
            leads, data["status"].code, by=request.user, reason=data["reason"]
        )
        messages.success(
            request,
            ngettext(
                "%(count)d lead moved to “%(status)s”.",
                "%(count)d leads moved to “%(status)s”.",
                moved,
            )
            % {"count": moved, "status": data["status"].name},
        )
    if data.get("responsible"):
        given = services.reassign_many(leads, data["responsible"], by=request.user)
        messages.success(
            request,
            ngettext(
                "%(count)d lead given to %(name)s.", "%(count)d leads given to %(name)s.", given
            )
            % {"count": given, "name": user_display_name(data["responsible"])},
        )
    return redirect(_back_to_list(request))


def _back_to_list(request) -> str:
    """Back to the list as it was filtered (a path of the list only, never elsewhere)."""
    back = request.POST.get("next", "")
    if back.startswith("/leads/") and url_has_allowed_host_and_scheme(back, allowed_hosts=None):
        return back
    return reverse("crm:lead_list")
