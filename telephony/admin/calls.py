"""Calls in the admin: the call log, its raw events, rejected webhook payloads, and the call
report. Calls are written by the PBX; the one thing a person does here is choose the lead of a
call whose number several leads share."""

import json

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.admin import (
    HiddenIsNotFound,
    QuickList,
    ReadOnlyAdmin,
    ReadOnlyInline,
    UserFilter,
)
from crm.forms import VisibleChoiceField
from crm.models import display_name_or_dash, user_display_name
from crm.phones import to_e164
from crm.selectors import can_see_all_leads, leads_visible_to
from crm.templatetags.crm_workspace import url_with_id
from telephony.calls import reports, selectors, services
from telephony.calls.shown import whose, with_hidden_details
from telephony.models import Call, CallEvent, RejectedPayload

MAX_REPORT_DAYS = 366


def pretty_json(value) -> str:
    return format_html(
        '<pre style="white-space: pre-wrap">{}</pre>',
        json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True),
    )


# --- Calls ----------------------------------------------------------------------------------


class LeadFilter(admin.SimpleListFilter):
    title = _("lead")
    parameter_name = "has_lead"

    def lookups(self, request, model_admin):
        return [
            ("yes", _("found")),
            ("choose", _("to choose among several")),
            ("no", _("none")),
        ]

    def queryset(self, request, queryset):
        with_candidates = Call.candidate_leads.through.objects.values("call_id")
        if self.value() == "yes":
            return queryset.exclude(lead=None)
        if self.value() == "choose":
            return queryset.filter(lead=None, pk__in=with_candidates)
        if self.value() == "no":
            return queryset.filter(lead=None).exclude(pk__in=with_candidates)
        return queryset


class ShownCallDetails:
    """A call's manager, extension and transfer as a reader may see them (with_hidden_details
    says what of a colleague's call is hidden): for the calls list and the lead page's calls."""

    @admin.display(description=_("manager"), ordering="agent__username")
    def manager(self, call):
        return display_name_or_dash(call.agent)

    @admin.display(description=_("extension"))
    def shown_extension(self, call):
        shown = "" if call.extension_hidden else call.extension
        return shown or self.get_empty_value_display()

    @admin.display(description=_("transferred to"))
    def shown_transferred_to(self, call):
        shown = "" if call.transferred_to_hidden else call.transferred_to
        return shown or self.get_empty_value_display()


class CallEventInline(ReadOnlyInline, admin.TabularInline):
    model = CallEvent
    fields = ["occurred_at", "type", "event_id", "received_at", "data"]
    readonly_fields = fields
    verbose_name_plural = _("events from the PBX")

    @admin.display(description=_("payload"))
    def data(self, event):
        return pretty_json(event.payload)


class ReportForm(forms.Form):
    date_from = forms.DateField(
        label=_("First day"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    date_to = forms.DateField(
        label=_("Last day"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    manager = VisibleChoiceField(
        queryset=None, required=False, label=_("Manager"), empty_label=_("all managers")
    )

    def __init__(self, data, *, user):
        today = reports.company_today()
        data = data.copy()
        data.setdefault("date_from", (today.replace(day=1)).isoformat())
        data.setdefault("date_to", today.isoformat())
        super().__init__(data)
        self.fields["manager"].queryset = reports.managers_for_report(user)
        self.fields["manager"].label_from_instance = user_display_name

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end:
            if start > end:
                raise forms.ValidationError(_("The first day is after the last one."))
            if (end - start).days >= MAX_REPORT_DAYS:
                raise forms.ValidationError(
                    _("Choose at most %(count)d days.") % {"count": MAX_REPORT_DAYS}
                )
        return cleaned


@admin.register(Call)
class CallAdmin(ShownCallDetails, QuickList, HiddenIsNotFound, admin.ModelAdmin):
    list_display = [
        "started_at",
        "direction",
        "from_raw",
        "to_raw",
        "call_lead",
        "manager",
        "state",
        "duration",
        "talk_time",
    ]
    # Periods, not a date hierarchy, and no filter by connector: each of those reads every
    # visible call to draw its links, on every page.
    list_filter = [
        ("started_at", admin.DateFieldListFilter),
        "direction",
        "state",
        ("agent", UserFilter),
        LeadFilter,
    ]
    list_select_related = ["lead__responsible__profile", "agent__profile"]
    show_full_result_count = False  # a second pass over every visible call on each page
    list_per_page = 50  # a log read from the top: 100 rows of nine columns take twice as long
    search_fields = ["from_raw", "to_raw", "from_e164", "to_e164", "call_id"]
    search_help_text = _("A phone number in any format, or the PBX call id.")
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "direction",
                    "state",
                    "from_raw",
                    "to_raw",
                    "line",
                    "shown_extension",
                    "manager",
                    "call_lead",  # "lead" while it can be chosen (get_fieldsets)
                    "possible_leads",
                ]
            },
        ),
        (
            _("Times"),
            {
                "fields": [
                    "started_at",
                    "answered_at",
                    "ended_at",
                    "duration",
                    "talk_time",
                    "last_event_at",
                ]
            },
        ),
        (
            _("Details"),
            {
                "fields": [
                    "source",
                    "call_id",
                    "hangup_cause",
                    "shown_transferred_to",
                    "recording",
                    "timeline_entry",
                ]
            },
        ),
    ]
    inlines = [CallEventInline]

    def get_queryset(self, request):
        calls = selectors.calls_visible_to(request.user, super().get_queryset(request))
        return with_hidden_details(request.user, calls)

    def get_object(self, request, object_id, from_field=None):
        """The call, with its possible leads split into those this user may see and the rest
        (named only by whose they are)."""
        call = super().get_object(request, object_id, from_field)
        if call is not None:
            candidates = call.candidate_leads.select_related("responsible__profile")
            visible = set(leads_visible_to(request.user, candidates).values_list("pk", flat=True))
            call.candidates_shown = [lead for lead in candidates if lead.pk in visible]
            call.candidates_hidden = [lead for lead in candidates if lead.pk not in visible]
        return call

    def get_inlines(self, request, obj):
        # The PBX's raw events may name the caller: not shown with a colleague's lead.
        if obj is not None and obj.lead_hidden:
            return []
        return super().get_inlines(request, obj)

    def get_search_results(self, request, queryset, search_term):
        found, duplicates = super().get_search_results(request, queryset, search_term)
        number = to_e164(search_term.strip()) if search_term.strip() else None
        if number:
            found |= queryset.filter(Q(from_e164=number) | Q(to_e164=number))
        return found, duplicates

    # A call is the PBX's record: never added or deleted by hand, and changed only to choose
    # its lead among the possible ones.
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or self.lead_choices(request, obj).exists()

    def lead_choices(self, request, call):
        """The leads `call` may be settled on by this user: none once it has a lead."""
        if call.lead_id is not None:
            return call.candidate_leads.none()
        return leads_visible_to(request.user, call.candidate_leads.all())

    def get_fieldsets(self, request, obj=None):
        if obj is None or not self.has_change_permission(request, obj):
            return self.fieldsets
        return [
            (title, {**options, "fields": [_editable(name) for name in options["fields"]]})
            for title, options in self.fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        fields = [
            name for _, options in self.get_fieldsets(request, obj) for name in options["fields"]
        ]
        return [name for name in fields if name != "lead"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "lead":
            kwargs["form_class"] = VisibleChoiceField  # its choices are set in get_form
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if "lead" in form.base_fields:
            field = form.base_fields["lead"]
            field.queryset = self.lead_choices(request, obj)
            field.required = True
            field.help_text = _("Several leads have this number: choose whose call it was.")
            for link in ("can_add_related", "can_change_related", "can_view_related"):
                setattr(field.widget, link, False)
        return form

    def save_model(self, request, obj, form, change):
        """Only the lead is ever chosen here, through the service."""
        services.choose_lead(obj, form.cleaned_data["lead"])

    @admin.display(description=_("lead"), ordering="lead")
    def call_lead(self, call):
        if call.lead is None:
            return self.get_empty_value_display()
        if call.lead_hidden:
            return whose(call.lead)
        url = url_with_id(call.lead_id, "admin:crm_lead_change")  # reversed once, not per row
        return format_html('<a href="{}">{}</a>', url, call.lead)

    @admin.display(description=_("possible leads"))
    def possible_leads(self, call):
        shown = [str(lead) for lead in call.candidates_shown]
        others = sorted({whose(lead) for lead in call.candidates_hidden})
        return "; ".join(shown + others) or self.get_empty_value_display()

    @admin.display(description=_("timeline entry"))
    def timeline_entry(self, call):
        if call.activity_id is None or call.lead_hidden:
            return self.get_empty_value_display()
        url = reverse("admin:crm_activity_change", args=[call.activity_id])
        return format_html('<a href="{}">{}</a>', url, call.activity)

    @admin.display(description=_("recording"))
    def recording(self, call):
        if not call.recording_url.startswith(("https://", "http://")):
            return call.recording_url or "-"
        return format_html(
            '<audio controls preload="none" src="{}"></audio> <a href="{}">{}</a>',
            call.recording_url,
            call.recording_url,
            gettext("download"),
        )

    # --- The report -------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        report = path(
            "report/",
            self.admin_site.admin_view(self.report_view),
            name="{}_{}_report".format(*info),
        )
        return [report, *super().get_urls()]

    def report_view(self, request):
        """Calls per manager and day, as a table or a CSV file."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ReportForm(request.GET, user=request.user)
        rows = []
        if form.is_valid():
            rows = reports.call_report(
                request.user,
                form.cleaned_data["date_from"],
                form.cleaned_data["date_to"],
                form.cleaned_data["manager"],
            )
            if request.GET.get("format") == "csv":
                return self.report_csv(rows, form.cleaned_data)
        params = {name: value for name, value in request.GET.items() if name != "format"}
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Call report"),
            "opts": self.opts,
            "form": form,
            "rows": rows,
            "total": reports.total(rows),
            "columns": reports.columns(),
            "csv_query": urlencode({**params, "format": "csv"}),
        }
        return TemplateResponse(request, "admin/telephony/call/report.html", context)

    def report_csv(self, rows, cleaned) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        name = f"calls-{cleaned['date_from']:%Y%m%d}-{cleaned['date_to']:%Y%m%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response.write(reports.as_csv(rows))
        return response


def _editable(name: str) -> str:
    """A call's field as it is while its lead can be chosen: the lead is then a choice."""
    return "lead" if name == "call_lead" else name


# --- Events and rejected payloads, for audit ------------------------------------------------


@admin.register(CallEvent)
class CallEventAdmin(QuickList, HiddenIsNotFound, ReadOnlyAdmin):
    list_display = ["occurred_at", "type", "source", "event_id", "call", "received_at"]
    list_filter = ["type", "source"]
    list_select_related = ["call"]
    search_fields = ["event_id", "call__call_id"]
    date_hierarchy = "occurred_at"
    fields = ["source", "event_id", "type", "call", "occurred_at", "received_at", "data"]
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if can_see_all_leads(request.user):
            return queryset
        calls = with_hidden_details(request.user, selectors.calls_visible_to(request.user))
        return queryset.filter(call__in=calls.filter(lead_hidden=False).values("pk"))

    @admin.display(description=_("payload"))
    def data(self, event):
        return pretty_json(event.payload)


@admin.register(RejectedPayload)
class RejectedPayloadAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "source", "error", "times"]
    list_filter = ["source"]
    search_fields = ["error"]
    date_hierarchy = "received_at"
    fields = ["source", "received_at", "times", "error", "raw_body", "raw_headers"]
    readonly_fields = fields

    @admin.display(description=_("body"))
    def raw_body(self, rejected):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', rejected.body)

    @admin.display(description=_("headers"))
    def raw_headers(self, rejected):
        return pretty_json(rejected.headers)
