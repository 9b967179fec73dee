from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext, override
from django.utils.translation import gettext_lazy as _

from crm import admin as crm_admin
from crm.forms import VisibleChoiceField
from crm.lead_page import ADMIN, LeadPanel, lead_panels
from crm.models import display_name_or_dash, user_display_name
from crm.selectors import can_see_all_leads, leads_visible_to
from nurture import selectors, services
from nurture.models import (
    CalendarDay,
    Enrollment,
    MailboxLimit,
    MessageTemplate,
    OutboundMessage,
    Sequence,
    Suppression,
)

# With the weekday: sends move around weekends and holidays.
SEND_FORMAT = "D, j M Y, H:i"


def send_time(moment) -> str:
    return date_format(timezone.localtime(moment), SEND_FORMAT)


def step(enrollment) -> str:
    return gettext("%(sent)d of %(total)d") % {
        "sent": enrollment.sent_count,
        "total": enrollment.sequence.max_messages,
    }


# --- Sequences ------------------------------------------------------------------------------


class MessageTemplateInline(admin.StackedInline):
    model = MessageTemplate
    fields = ["position", "language", "subject", "body_text", "body_html"]
    extra = 0


class PreviewForm(forms.Form):
    def __init__(self, *args, user, admin_site, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lead"] = VisibleChoiceField(
            queryset=leads_visible_to(user),
            label=_("lead"),
            widget=AutocompleteSelect(Enrollment._meta.get_field("lead"), admin_site),
        )


@admin.register(Sequence)
class SequenceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "enrolling_status",
        "interval_working_days",
        "max_messages",
        "window_start",
        "window_end",
        "is_active",
    ]
    list_filter = ["is_active"]
    list_select_related = ["enrolling_status"]
    inlines = [MessageTemplateInline]

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        preview = path(
            "<path:object_id>/preview/",
            self.admin_site.admin_view(self.preview_view),
            name="{}_{}_preview".format(*info),
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request, object_id):
        """Each email of the sequence as a chosen lead would get it, and when (a lead the
        user may not see answers 404)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        sequence = self.get_object(request, unquote(object_id))
        if sequence is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        form = PreviewForm(
            request.GET if "lead" in request.GET else None,
            user=request.user,
            admin_site=self.admin_site,
        )
        lead = form.cleaned_data["lead"] if form.is_valid() else None
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Preview of “%(sequence)s”") % {"sequence": sequence},
            "opts": self.opts,
            "original": sequence,
            "form": form,
            "media": self.media + form.media,
            "lead": lead,
            "previews": selectors.previews(sequence, lead) if lead else [],
            "sends": selectors.sends_if_enrolled(sequence, lead) if lead else [],
        }
        return TemplateResponse(request, "admin/nurture/sequence/preview.html", context)


# --- Enrollments ----------------------------------------------------------------------------


@admin.register(Enrollment)
class EnrollmentAdmin(crm_admin.QuickList, crm_admin.HiddenIsNotFound, admin.ModelAdmin):
    list_display = [
        "lead",
        "sequence",
        "state",
        "step",
        "next_send_at",
        "halt_reason",
        "enrolled_at",
    ]
    list_filter = [("enrolled_at", admin.DateFieldListFilter), "state", "halt_reason", "sequence"]
    list_select_related = ["lead", "sequence"]
    search_fields = ["lead__title", "lead__email", "lead__last_name"]
    fields = [
        "lead",
        "sequence",
        "state",
        "step",
        "next_send_at",
        "halt_reason",
        "enrolled_at",
        "ended_at",
        "planned_sends",
    ]
    readonly_fields = fields
    actions = ["halt", "restart"]

    def get_queryset(self, request):
        return selectors.enrollments_visible_to(request.user, super().get_queryset(request))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Nothing on an enrollment is edited by hand; the actions (which need this permission on
        # the list) go through the services.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("step"))
    def step(self, enrollment):
        return step(enrollment)

    @admin.display(description=_("emails"))
    def planned_sends(self, enrollment):
        return render_to_string(
            "admin/nurture/planned_sends.html", {"sends": selectors.planned_sends(enrollment)}
        )

    @admin.action(description=_("Halt"), permissions=["change"])
    def halt(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        halted = services.halt(Enrollment.objects.filter(pk__in=ids), Enrollment.HaltReason.MANUAL)
        self.message_user(
            request,
            ngettext("%(count)d enrollment halted.", "%(count)d enrollments halted.", halted)
            % {"count": halted},
            messages.SUCCESS,
        )

    @admin.action(description=_("Restart from the first email"), permissions=["change"])
    def restart(self, request, queryset):
        outcomes = [
            services.restart(enrollment)
            for enrollment in queryset.select_related("lead", "sequence")
        ]
        restarted = sum(outcome is not None for outcome in outcomes)
        if restarted:
            self.message_user(
                request,
                ngettext(
                    "%(count)d enrollment restarted from the first email.",
                    "%(count)d enrollments restarted from the first email.",
                    restarted,
                )
                % {"count": restarted},
                messages.SUCCESS,
            )
        if skipped := len(outcomes) - restarted:
            self.message_user(
                request,
                ngettext(
                    "%(count)d enrollment was not restarted: its lead is already in that "
                    "sequence again.",
                    "%(count)d enrollments were not restarted: their leads are already in those "
                    "sequences again.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )


# --- Outbox ---------------------------------------------------------------------------------


@admin.register(OutboundMessage)
class OutboundMessageAdmin(
    crm_admin.QuickList, crm_admin.HiddenIsNotFound, crm_admin.ReadOnlyAdmin
):
    list_display = [
        "number",
        "lead",
        "to_email",
        "subject",
        "state",
        "sent_at",
        "attempts",
        "error",
    ]
    # Periods, not a date hierarchy: that reads every visible message to draw its links.
    list_filter = [
        ("created_at", admin.DateFieldListFilter),
        "state",
        ("sender", crm_admin.UserFilter),
    ]
    list_select_related = ["enrollment__lead", "sender__profile"]
    show_full_result_count = False  # a second pass over every visible message on each page
    list_per_page = 50  # a log read from the top: 100 rows take twice as long
    search_fields = ["to_email", "subject", "message_id"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "enrollment",
                    "number",
                    "state",
                    "sent_by",
                    "to_email",
                    "subject",
                    "message_id",
                    "provider_message_id",
                ]
            },
        ),
        (
            _("Delivery"),
            {
                "fields": [
                    "scheduled_for",
                    "sent_at",
                    "attempts",
                    "retry_at",
                    "lease_expires_at",
                    "error",
                    "created_at",
                ]
            },
        ),
        (_("Body"), {"fields": ["text_body", "html_body"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]

    def get_queryset(self, request):
        return selectors.messages_visible_to(request.user, super().get_queryset(request))

    @admin.display(description=_("lead"), ordering="enrollment__lead")
    def lead(self, message):
        return message.enrollment.lead

    @admin.display(description=_("sender"))
    def sent_by(self, message):
        return display_name_or_dash(message.sender)

    @admin.display(description=_("plain-text body"))
    def text_body(self, message):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', message.body_text)

    @admin.display(description=_("HTML body"))
    def html_body(self, message):
        if not message.body_html:
            return "-"
        # A sandboxed frame: the HTML is shown as the lead sees it, and runs no scripts.
        return format_html(
            '<iframe sandbox srcdoc="{}" title="{}" style="width: 100%; height: 24em; '
            'border: 1px solid var(--border-color)"></iframe>',
            message.body_html,
            gettext("HTML body"),
        )


# --- Calendar and mailboxes -----------------------------------------------------------------


@admin.register(CalendarDay)
class CalendarDayAdmin(admin.ModelAdmin):
    list_display = ["date", "kind", "note"]
    list_editable = ["kind", "note"]
    list_filter = ["kind"]
    date_hierarchy = "date"


@admin.register(MailboxLimit)
class MailboxLimitAdmin(crm_admin.HiddenIsNotFound, admin.ModelAdmin):
    """Supervisors set the caps; a manager sees their own."""

    list_display = ["user", "per_minute", "per_day"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if can_see_all_leads(request.user):
            return queryset
        return queryset.filter(user=request.user)


# --- The lead's page: its enrollments (added through crm.lead_page) ------------------------


class EnrollmentInline(crm_admin.ReadOnlyInline, admin.TabularInline):
    model = Enrollment
    fields = ["sequence", "state", "step", "halt_reason", "enrolled_at", "planned_sends"]
    readonly_fields = fields
    show_change_link = True
    verbose_name_plural = _("nurturing")

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("lead", "sequence")
        return queryset.prefetch_related("messages")

    @admin.display(description=_("step"))
    def step(self, enrollment):
        return step(enrollment)

    @admin.display(description=_("emails"))
    def planned_sends(self, enrollment):
        sends = selectors.planned_sends(enrollment)
        if not sends:
            return "-"
        return format_html(
            '<ol class="planned-sends">{}</ol>',
            format_html_join(
                "",
                "<li>{} ({}){}</li>",
                (
                    (
                        send_time(send.at),
                        send.state_label,
                        format_html(": {}", "; ".join(send.reasons)) if send.reasons else "",
                    )
                    for send in sends
                ),
            ),
        )


@receiver(lead_panels, dispatch_uid="nurture.admin.lead_panel")
def nurturing_on_the_lead_page(sender, request, lead, **kwargs):
    """The lead's enrollments and, when its address is on the suppression list, since when and
    why."""
    if kwargs.get("page", ADMIN) != ADMIN:
        return None  # the workspace card's panel is in workspace.py
    if lead is None:
        return LeadPanel("nurture", order=10, admin_inlines=(EnrollmentInline,))
    suppression = selectors.active_suppression(lead.email)
    return LeadPanel(
        "nurture",
        order=10,
        admin_inlines=(EnrollmentInline,),
        template="admin/nurture/lead/suppression.html" if suppression else "",
        context={
            "suppression": suppression,
            "can_see_suppression": request.user.has_perm("nurture.view_suppression"),
        },
    )


# --- The suppression list -------------------------------------------------------------------


class LiftSuppressionForm(forms.Form):
    reason = forms.CharField(
        label=_("Why may this address be emailed again?"),
        help_text=_("Kept with the suppression and written on every lead with this address."),
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )


class SuppressionStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", _("in force")), ("lifted", _("lifted"))]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(lifted_at__isnull=True)
        if self.value() == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        return queryset


@admin.register(Suppression)
class SuppressionAdmin(crm_admin.HiddenIsNotFound, crm_admin.ReadOnlyAdmin):
    """Read-only: suppressions come from unsubscribes, bounces and complaints. A supervisor
    lifts one from its page, saying why; the row keeps who, when and why, and the admin's
    history has a log entry. Managers see only those of their own leads' addresses."""

    list_display = ["address", "reason", "created_at", "lifted_at", "lifted_by_name"]
    list_filter = [SuppressionStateFilter, "reason"]
    list_select_related = ["lifted_by__profile"]
    search_fields = ["address"]
    date_hierarchy = "created_at"
    fields = [
        "address",
        "reason",
        "created_at",
        "cause",
        "lifted_at",
        "lifted_by_name",
        "lift_reason",
    ]
    readonly_fields = fields
    change_form_template = "admin/nurture/suppression/change_form.html"

    def get_queryset(self, request):
        return selectors.suppressions_visible_to(request.user, super().get_queryset(request))

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        lift = path(
            "<path:object_id>/lift/",
            self.admin_site.admin_view(self.lift_view),
            name="{}_{}_lift".format(*info),
        )
        return [lift, *super().get_urls()]

    @admin.display(description=_("lifted by"), ordering="lifted_by")
    def lifted_by_name(self, suppression):
        if suppression.lifted_by is None:
            return self.get_empty_value_display()
        return user_display_name(suppression.lifted_by)

    @admin.display(description=_("what caused it"))
    def cause(self, suppression):
        return format_html(
            '<pre style="white-space: pre-wrap">{}</pre>',
            format_html_join("\n", "{}: {}", sorted(suppression.details.items())),
        )

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        if obj is not None:
            context["can_lift"] = obj.is_active and can_see_all_leads(request.user)
            context["address_leads"] = self._leads_with_the_address(request, obj)
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    def lift_view(self, request, object_id):
        """The form that lifts a suppression: supervisors only, and only with a reason."""
        suppression = self.get_object(request, unquote(object_id))
        if suppression is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not can_see_all_leads(request.user):
            raise PermissionDenied
        if not suppression.is_active:
            return self._already_lifted(request, suppression)
        form = LiftSuppressionForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            if not services.lift_suppression(suppression, by=request.user, reason=reason):
                return self._already_lifted(request, suppression)  # by somebody else meanwhile
            with override(None):  # stored untranslated, shown in the reader's language
                fields = [
                    str(Suppression._meta.get_field(name).verbose_name)
                    for name in ("lifted_at", "lifted_by", "lift_reason")
                ]
            self.log_change(request, suppression, [{"changed": {"fields": fields}}])
            self.message_user(
                request,
                gettext("%(address)s may be emailed again.") % {"address": suppression.address},
                messages.SUCCESS,
            )
            return redirect("admin:nurture_suppression_change", suppression.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Lift the suppression of %(address)s")
            % {"address": suppression.address},
            "opts": self.opts,
            "original": suppression,
            "form": form,
            "address_leads": self._leads_with_the_address(request, suppression),
        }
        return TemplateResponse(request, "admin/nurture/suppression/lift.html", context)

    def _already_lifted(self, request, suppression):
        self.message_user(request, gettext("This suppression is already lifted."), messages.INFO)
        return redirect("admin:nurture_suppression_change", suppression.pk)

    def _leads_with_the_address(self, request, suppression):
        return (
            leads_visible_to(request.user)
            .filter(email=suppression.address)
            .select_related("status", "responsible__profile")
            .order_by("pk")
        )
