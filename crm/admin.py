from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import transaction
from django.forms.formsets import INITIAL_FORM_COUNT, TOTAL_FORM_COUNT
from django.forms.models import BaseInlineFormSet
from django.http import Http404
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from crm import lead_page, selectors, services
from crm.forms import MoveToStatusForm
from crm.models import Activity, Lead, LeadStatus, Notification, Profile


@admin.register(LeadStatus)
class LeadStatusAdmin(admin.ModelAdmin):
    list_display = ["code", "name_ru", "name_en", "kind", "order"]
    list_editable = ["order"]
    ordering = ["order"]


class HiddenIsNotFound:
    """Mixed into a ModelAdmin whose get_queryset keeps a manager to their own rows: a row outside
    it answers 404, as a row that does not exist does. (Django's admin redirects to the index
    with "… with ID “5” doesn't exist", which a script can tell from a 404 no better; a plain
    404 is the same for every page.)"""

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        raise Http404(_("Not found."))


class ReadOnlyInlineFormSet(BaseInlineFormSet):
    """A view-only inline: a POST of the lead's form without it (a script, a test) is a POST
    with nothing to change here, not a broken form."""

    def __init__(self, data=None, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        if self.is_bound and self.add_prefix(TOTAL_FORM_COUNT) not in self.data:
            self.data = self.data.copy()
            self.data[self.add_prefix(TOTAL_FORM_COUNT)] = "0"
            self.data[self.add_prefix(INITIAL_FORM_COUNT)] = "0"


class ReadOnlyInline:
    """Mixed into an inline that only shows rows: nothing added, changed or deleted there."""

    formset = ReadOnlyInlineFormSet
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ActivityInline(ReadOnlyInline, admin.TabularInline):
    model = Activity
    fields = ["created_at", "kind", "description", "actor"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    verbose_name_plural = _("timeline")

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("actor")
        return selectors.with_status_names(queryset)

    @admin.display(description=_("what"))
    def description(self, activity):
        return activity.description


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "full_name",
        "email",
        "phone",
        "status",
        "responsible",
        "last_activity",
    ]
    list_filter = ["status", "responsible"]
    list_select_related = ["status", "responsible"]
    ordering = ["-created_at", "-id"]
    search_fields = ["title"]  # the real matching is in get_search_results
    search_help_text = _("Name, email, phone in any format, title or company.")
    readonly_fields = ["phone", "status_changed_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["title", "status", "responsible"]}),
        (
            _("Contact"),
            {"fields": ["first_name", "last_name", "email", "phone_raw", "phone", "company"]},
        ),
        (
            _("Details"),
            {
                "fields": [
                    "source",
                    "language",
                    "time_zone",
                    "do_not_email",
                    "status_changed_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]
    inlines = [ActivityInline]
    actions = ["move_to_status"]
    change_form_template = "admin/crm/lead/change_form.html"

    def get_queryset(self, request):
        queryset = selectors.with_last_activity(super().get_queryset(request))
        # The last-activity annotation groups the query, which drops Meta.ordering; the
        # autocomplete (e.g. choosing a lead for a preview) pages through this queryset and
        # needs one.
        queryset = queryset.order_by("-created_at", "-pk")
        return selectors.leads_visible_to(request.user, queryset)

    def get_inlines(self, request, obj):
        """The timeline, then what other apps add to the lead's page (crm.lead_page)."""
        added = [
            inline for panel in lead_page.panels_for(request, obj) for inline in panel.admin_inlines
        ]
        return [*self.inlines, *added]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        panels = lead_page.panels_for(request, obj) if obj is not None else []
        context["lead_tools"] = [
            panel.render(panel.tools_template, request, obj)
            for panel in panels
            if panel.tools_template
        ]
        context["lead_panels"] = [
            panel.render(panel.template, request, obj) for panel in panels if panel.template
        ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_search_results(self, request, queryset, search_term):
        return selectors.search_leads(queryset, search_term), False

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "responsible" and not selectors.can_see_all_leads(request.user):
            kwargs["queryset"] = get_user_model().objects.filter(pk=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("responsible", request.user.pk)
        initial.setdefault("status", LeadStatus.objects.filter(code=LeadStatus.NEW).first())
        return initial

    @admin.display(description=_("name"))
    def full_name(self, lead):
        return lead.full_name

    @admin.display(description=_("last activity"), ordering="last_activity_at")
    def last_activity(self, lead):
        return lead.last_activity_at

    def save_model(self, request, obj, form, change):
        """Status changes go through the status service, never a plain save."""
        if not change:
            services.create_lead(obj, by=request.user)
            return
        new_status = obj.status
        with transaction.atomic():
            obj.status = Lead.objects.get(pk=obj.pk).status
            obj.save()
            services.change_status(obj, new_status.code, by=request.user)

    @admin.action(description=_("Move to status…"), permissions=["change"])
    def move_to_status(self, request, queryset):
        form = MoveToStatusForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            status = form.cleaned_data["status"]
            moved = sum(
                services.change_status(
                    lead, status.code, by=request.user, reason=form.cleaned_data["reason"]
                )
                for lead in queryset
            )
            self.message_user(
                request,
                ngettext(
                    "%(count)d lead moved to “%(status)s”.",
                    "%(count)d leads moved to “%(status)s”.",
                    moved,
                )
                % {"count": moved, "status": status.name},
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Move leads to another status"),
            "opts": self.model._meta,
            "form": form,
            "leads": queryset,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/crm/lead/move_to_status.html", context)


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "display_name", "phone", "extension"]
    search_fields = ["user__username", "display_name", "extension"]


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ["created_at", "lead", "kind", "description", "actor"]
    list_filter = ["kind"]
    list_select_related = ["lead", "actor"]
    raw_id_fields = ["lead"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        queryset = selectors.with_status_names(super().get_queryset(request))
        if selectors.can_see_all_leads(request.user):
            return queryset
        return queryset.filter(lead__responsible=request.user)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "lead", "message", "is_read"]
    list_filter = ["is_read"]
    list_select_related = ["user", "lead"]
    raw_id_fields = ["lead"]
    actions = ["mark_read"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if selectors.can_see_all_leads(request.user):
            return queryset
        return queryset.filter(user=request.user)

    @admin.action(description=_("Mark as read"), permissions=["change"])
    def mark_read(self, request, queryset):
        queryset.update(is_read=True)
