from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from crm import admin as crm_admin
from crm.lead_page import LeadPanel, lead_panels
from crm.selectors import leads_visible_to
from nurture import selectors, services
from nurture.models import (
    CalendarDay,
    Enrollment,
    MailboxLimit,
    MessageTemplate,
    OutboundMessage,
    Sequence,
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
        self.fields["lead"] = forms.ModelChoiceField(
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
        """Each email of the sequence as a chosen lead would get it, and when."""
        sequence = self.get_object(request, unquote(object_id))
        if sequence is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, sequence):
            raise PermissionDenied
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
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = [
        "lead",
        "sequence",
        "state",
        "step",
        "next_send_at",
        "halt_reason",
        "enrolled_at",
    ]
    list_filter = ["state", "halt_reason", "sequence"]
    list_select_related = ["lead", "sequence"]
    search_fields = ["lead__title", "lead__email", "lead__last_name"]
    date_hierarchy = "enrolled_at"
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
class OutboundMessageAdmin(admin.ModelAdmin):
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
    list_filter = ["state", ("sender", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["enrollment__lead", "sender"]
    search_fields = ["to_email", "subject", "message_id"]
    date_hierarchy = "created_at"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "enrollment",
                    "number",
                    "state",
                    "sender",
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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("lead"), ordering="enrollment__lead")
    def lead(self, message):
        return message.enrollment.lead

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
class MailboxLimitAdmin(admin.ModelAdmin):
    list_display = ["user", "per_minute", "per_day"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]


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
    return LeadPanel("nurture", order=10, admin_inlines=(EnrollmentInline,))
