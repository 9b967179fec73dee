"""The workspace's nurturing page (namespace "nurturing"): the enrollments, active or finished,
and which email of each sequence the leads answer."""

from django import forms
from django.contrib.auth import get_user_model
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from crm import paging
from crm.forms import ChoiceField, ModelChoiceField, PersonChoiceField
from crm.selectors import can_see_all_leads, people_to_assign
from crm.views.access import workspace_page
from nurture import selectors
from nurture.models import Enrollment, Sequence

ENROLLMENTS_PER_PAGE = 25
ACTIVE, FINISHED = "active", "finished"
STATES = {
    ACTIVE: [Enrollment.State.ACTIVE],
    FINISHED: [Enrollment.State.COMPLETED, Enrollment.State.HALTED],
    Enrollment.State.COMPLETED: [Enrollment.State.COMPLETED],
    Enrollment.State.HALTED: [Enrollment.State.HALTED],
}


class NurturingFilterForm(forms.Form):
    """The page's filters, read from the URL (so a view can be bookmarked). `state` picks the
    tab: active, or finished (all, only completed, only stopped)."""

    state = ChoiceField(
        label=_("Outcome"),
        required=False,
        choices=[
            (ACTIVE, _("Active")),
            (FINISHED, _("Any outcome")),
            (Enrollment.State.COMPLETED, _("All emails sent")),
            (Enrollment.State.HALTED, _("Stopped")),
        ],
    )
    sequence = ModelChoiceField(
        label=_("Sequence"),
        queryset=Sequence.objects.order_by("name"),
        required=False,
        empty_label=_("Any sequence"),
    )
    manager = PersonChoiceField(
        label=_("Manager"),
        queryset=get_user_model().objects.none(),
        required=False,
        empty_label=_("Everyone"),
    )

    def __init__(self, data, *, user):
        super().__init__(data)
        if can_see_all_leads(user):
            self.fields["manager"].queryset = people_to_assign(user)
        else:
            del self.fields["manager"]

    @property
    def chosen_state(self) -> str:
        return (self.is_valid() and self.cleaned_data["state"]) or ACTIVE

    @property
    def choices(self) -> dict:
        """The sequence and the manager chosen (None for any)."""
        if not self.is_valid():
            return {"sequence": None, "manager": None}
        return {
            "sequence": self.cleaned_data["sequence"],
            "manager": self.cleaned_data.get("manager"),
        }


@workspace_page
def overview(request):
    filters = NurturingFilterForm(request.GET, user=request.user)
    state = filters.chosen_state
    enrollments = selectors.enrollments_on_the_page(
        request.user, finished=state != ACTIVE, states=STATES[state], **filters.choices
    )
    page = paging.page_of(
        enrollments if filters.is_valid() else enrollments.none(),
        request.GET.get("page"),
        ENROLLMENTS_PER_PAGE,
    )
    context = {
        "filters": filters,
        "tab": ACTIVE if state == ACTIVE else FINISHED,
        "state": state,
        "page": page,
        "rows": [
            {"enrollment": enrollment, "step": selectors.step_description(enrollment)}
            for enrollment in selectors.enrollment_rows(page.object_list)
        ],
        "sees_everyone": can_see_all_leads(request.user),
        **_queries(request),
    }
    template = (
        "nurture/nurturing/_enrollments.html"
        if request.htmx
        else "nurture/nurturing/enrollments.html"
    )
    return TemplateResponse(request, template, context, status=200 if filters.is_valid() else 400)


@workspace_page
def emails(request):
    """Which email works: for each sequence and each of its emails, how many leads got it and
    how many answered after it."""
    filters = NurturingFilterForm(request.GET, user=request.user)
    del filters.fields["state"]
    results = selectors.email_results(request.user, **filters.choices) if filters.is_valid() else []
    context = {"filters": filters, "tab": "emails", "results": results, **_queries(request)}
    template = "nurture/nurturing/_emails.html" if request.htmx else "nurture/nurturing/emails.html"
    return TemplateResponse(request, template, context, status=200 if filters.is_valid() else 400)


def _queries(request) -> dict:
    """The page's query without the page number (for the page links) and without the tab's own
    parameters (for the tabs, which keep the sequence and manager chosen)."""
    return {
        "query_without_page": paging.query_without(request.GET, "page"),
        "shared_query": paging.query_without(request.GET, "page", "state"),
    }
