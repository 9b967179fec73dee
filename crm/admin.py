from types import SimpleNamespace

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import PAGE_VAR, SEARCH_VAR, ChangeList
from django.contrib.auth import get_user_model
from django.db import transaction
from django.forms.formsets import INITIAL_FORM_COUNT, TOTAL_FORM_COUNT
from django.forms.models import BaseInlineFormSet
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from crm import lead_page, paging, preferences, selectors, services
from crm.erasure import erase_lead, erase_person
from crm.export import download_export
from crm.forms import MoveToStatusForm, NoteForm, VisibleChoiceField
from crm.models import (
    Activity,
    Lead,
    LeadStatus,
    Notification,
    Profile,
    display_name_or_dash,
    user_display_name,
)


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


_STAND_IN_PK = "9081726354"


class QuickChangeList(ChangeList):
    """Django's list, doing less on long lists.

    Its row links carry its search and filters (?_changelist_filters=…, so the change page
    leads back to them) as Django's do, but are built once per page: Django resolves each row's
    URL again to find out whether it is the list's own, 50 URL resolutions for a searched page.

    A search's first page reads the ids it finds, up to two thousand beyond the page (QuickList's
    paginator), and then its rows by id. Django counts what it finds, then looks for it again for
    the page's rows: for a name found 600 times, two passes over the trigram index. Found within
    those, they are counted by those ids: one pass."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # items_for_result skips its add_preserved_filters when this is empty
        self.row_link_query, self.preserved_filters = self.preserved_filters, ""

    def url_for_result(self, result):
        before, after = self._change_url_around_pk
        url = f"{before}{quote(getattr(result, self.pk_attname))}{after}"
        return f"{url}?{self.row_link_query}" if self.row_link_query else url

    @cached_property
    def _change_url_around_pk(self) -> tuple[str, str]:
        """The rows' change URL before and after the id, reversed once a page, not once a row
        (30 µs each)."""
        url = super().url_for_result(SimpleNamespace(**{self.pk_attname: _STAND_IN_PK}))
        before, found, after = url.partition(_STAND_IN_PK)
        if not found or _STAND_IN_PK in after:
            raise ValueError(f"The change URL does not hold the id once: {url}")
        return before, after

    def get_results(self, request):
        super().get_results(request)
        found = getattr(self.paginator, "first_ids", None)
        if found is not None:
            everything = (self.show_all and self.can_show_all) or not self.multi_page
            shown = found if everything else found[: self.list_per_page]
            # by id alone (they are already the visible rows searched for), in the list's order
            rows = self.apply_select_related(self.root_queryset.filter(pk__in=shown))
            self.result_list = rows.order_by(*self.get_ordering(request, rows))


class QuickList:
    """Mixed into a ModelAdmin with long lists (see QuickChangeList)."""

    # A searched first page reads up to this many ids beyond its own to count them: a common
    # surname among 100,000 leads is found a couple of thousand times, and counted by its ids
    # in 8 ms where a second pass over the trigram index made it 18.
    READ_AHEAD = 2000

    def get_changelist(self, request, **kwargs):
        return QuickChangeList

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        searched = self.get_search_fields(request) and request.GET.get(SEARCH_VAR, "").strip()
        if not searched:
            # "Leads: more than 10,000": counting every one of 100,000 took a third of the page
            return paging.CappedPaginator(
                queryset,
                per_page,
                orphans,
                allow_empty_first_page,
                wanted_page=_page_asked(request),
            )
        read_ahead = self.READ_AHEAD if _page_asked(request) == 1 else 0
        return paging.ReadAheadPaginator(
            queryset, per_page, orphans, allow_empty_first_page, read_ahead=read_ahead
        )


def _page_asked(request) -> int:
    """The admin's page number, as ChangeList reads it (anything but a number: the first)."""
    try:
        return int(request.GET.get(PAGE_VAR, 1))
    except ValueError:
        return 1


class UserFilter(admin.RelatedOnlyFieldListFilter):
    """A list filter by a user field, by display name. A manager is offered only themselves, as
    in every other choice of a user; a supervisor every user (the users table is small; finding
    those of the rows listed would read every row on each page)."""

    def field_choices(self, field, request, model_admin):
        users = get_user_model().objects.select_related("profile").order_by("username")
        if not selectors.can_see_all_leads(request.user):
            users = users.filter(pk=request.user.pk)
        return [(user.pk, user_display_name(user)) for user in users]


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records the CRM writes itself (the outbox, call events, ...): everything shown,
    nothing added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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


class NewestEntriesFormSet(ReadOnlyInlineFormSet):
    """The newest entries of the lead's timeline only: the admin draws every row of an inline
    as a form, and a lead with 200 entries took a fifth of a second to show."""

    shown = 50

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            self._queryset = super().get_queryset()[: self.shown]
        return self._queryset


class ActivityInline(ReadOnlyInline, admin.TabularInline):
    model = Activity
    formset = NewestEntriesFormSet
    fields = ["created_at", "kind", "description", "by"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    verbose_name_plural = _("timeline: the newest 50 entries (all of them on the lead's card)")

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("actor__profile")
        return selectors.with_status_names(queryset)

    @admin.display(description=_("what"))
    def description(self, activity):
        return activity.description

    @admin.display(description=_("by"))
    def by(self, activity):
        return display_name_or_dash(activity.actor)


@admin.register(Lead)
class LeadAdmin(QuickList, HiddenIsNotFound, admin.ModelAdmin):
    list_display = [
        "title",
        "full_name",
        "email",
        "phone",
        "status",
        "manager",
        "last_activity",
    ]
    list_filter = ["status", ("responsible", UserFilter)]
    list_select_related = ["status", "responsible__profile"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False  # a second count of every visible lead on each page
    list_per_page = 50  # half of Django's 100: the rows' rendering is most of the page's time
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
    actions = ["move_to_status", download_export, erase_person]
    change_form_template = "admin/crm/lead/change_form.html"

    def delete_model(self, request, obj):
        """Deleting a lead erases the person (crm.erasure): a plain delete would leave their
        letters, calls and log entries behind."""
        erase_lead(obj, by=request.user)

    def delete_queryset(self, request, queryset):
        for lead in queryset:
            erase_lead(lead, by=request.user)

    def get_deleted_objects(self, objs, request):
        """What goes is erase_lead's to decide (the outbox, calls and letters have no delete of
        their own in the admin): only a supervisor may, which erase_lead checks."""
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed = set() if selectors.can_see_all_leads(request.user) else {"lead"}
        return deleted, model_count, perms_needed, protected

    def log_deletions(self, request, queryset):
        """Nothing: erase_lead writes the audit entry, without the name Django's would carry."""

    def get_queryset(self, request):
        return selectors.leads_visible_to(request.user, super().get_queryset(request))

    def action_checkbox(self, obj):
        """Django's checkbox without a form widget's template for each row (a fifth of the
        list's time at 100 rows)."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            admin.helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            format_html(_("Select this object for an action - {}"), obj),
        )

    def view_on_site(self, lead):
        """The lead's card in the workspace, linked straight (not through the admin's /r/
        shortcut, which would redirect for any lead id and so tell which ones exist)."""
        return reverse("crm:lead_detail", args=[lead.pk])

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
        if db_field.name == "responsible":
            kwargs["form_class"] = VisibleChoiceField
            if not selectors.can_see_all_leads(request.user):
                kwargs["queryset"] = get_user_model().objects.filter(pk=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is not None and obj.responsible_id and "responsible" in form.base_fields:
            # A lead with a manager keeps one (emptying the field would be ignored).
            form.base_fields["responsible"].required = True
        return form

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("responsible", request.user.pk)
        initial.setdefault("status", LeadStatus.objects.filter(code=LeadStatus.NEW).first())
        return initial

    @admin.display(description=_("name"))
    def full_name(self, lead):
        return lead.full_name

    @admin.display(description=_("responsible"), ordering="responsible__username")
    def manager(self, lead):
        return display_name_or_dash(lead.responsible)

    @admin.display(description=_("last activity"), ordering="last_activity_at")
    def last_activity(self, lead):
        return lead.last_activity_at

    def save_model(self, request, obj, form, change):
        """Status changes go through the status service, and a new responsible through the
        reassignment (its timeline entry, the open tasks that go along), never a plain save."""
        if not change:
            services.create_lead(obj, by=request.user)
            return
        new_status = obj.status
        with transaction.atomic():
            services.update_lead(obj, by=request.user)
            services.change_status(obj, new_status.code, by=request.user)

    @admin.action(description=_("Move to status…"), permissions=["change"])
    def move_to_status(self, request, queryset):
        form = MoveToStatusForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            status = form.cleaned_data["status"]
            moved = services.change_status_of_many(
                queryset, status.code, by=request.user, reason=form.cleaned_data["reason"]
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
class ProfileAdmin(HiddenIsNotFound, admin.ModelAdmin):
    """Supervisors keep everybody's profile; a manager sees only their own, and edits its
    signature and phone. Who they are (user, display name) and their PBX extension (which
    decides whose calls they get) are a supervisor's to set."""

    list_display = ["user", "display_name", "phone", "extension"]
    list_select_related = ["user"]
    search_fields = ["user__username", "display_name", "extension"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if selectors.can_see_all_leads(request.user):
            return queryset
        return queryset.filter(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        if selectors.can_see_all_leads(request.user):
            return []
        return ["user", "display_name", "extension"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.user_id == request.user.pk:  # one's own language and time zone apply at once
            preferences.remember(request, obj)

    def has_change_permission(self, request, obj=None):
        if not super().has_change_permission(request, obj):
            return False
        return (
            obj is None
            or obj.user_id == request.user.pk
            or selectors.can_see_all_leads(request.user)
        )


@admin.register(Activity)
class ActivityAdmin(QuickList, HiddenIsNotFound, admin.ModelAdmin):
    """The timeline is the CRM's record: entries are never edited, and the one kind a person
    adds is a note, on a lead they may see, in their own name, now."""

    list_display = ["created_at", "lead", "kind", "description", "by"]
    list_filter = ["kind", ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["lead", "actor__profile"]
    autocomplete_fields = ["lead"]

    form = NoteForm  # the add form; entries are only viewed after that

    def get_queryset(self, request):
        queryset = selectors.with_status_names(super().get_queryset(request))
        if selectors.can_see_all_leads(request.user):
            return queryset
        return queryset.filter(lead__responsible=request.user)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["lead", "summary"]
        return ["created_at", "lead", "kind", "description", "by", "payload"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "lead":
            kwargs["queryset"] = selectors.leads_visible_to(request.user)
            kwargs["form_class"] = VisibleChoiceField
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.kind = Activity.Kind.NOTE
        obj.actor = request.user
        obj.payload = {}
        obj.created_at = timezone.now()
        services.add_activities([obj])

    @admin.display(description=_("what"))
    def description(self, activity):
        return activity.description

    @admin.display(description=_("by"), ordering="actor__username")
    def by(self, activity):
        return display_name_or_dash(activity.actor)


@admin.register(Notification)
class NotificationAdmin(QuickList, HiddenIsNotFound, admin.ModelAdmin):
    """Notifications are written by the CRM. Nobody adds or edits one here: the one thing a
    person changes is whether their own notifications are read."""

    list_display = ["created_at", "recipient", "lead", "message", "is_read"]
    list_filter = ["is_read"]
    list_select_related = ["user__profile", "lead"]
    fields = ["created_at", "recipient", "lead", "message", "is_read"]
    readonly_fields = ["created_at", "recipient", "lead", "message"]
    actions = ["mark_read", "mark_unread"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if selectors.can_see_all_leads(request.user):
            return queryset
        return queryset.filter(user=request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or obj.user_id == request.user.pk

    @admin.display(description=_("user"), ordering="user__username")
    def recipient(self, notification):
        return display_name_or_dash(notification.user)

    @admin.action(description=_("Mark as read"), permissions=["change"])
    def mark_read(self, request, queryset):
        self._mark(request, queryset, is_read=True)

    @admin.action(description=_("Mark as unread"), permissions=["change"])
    def mark_unread(self, request, queryset):
        self._mark(request, queryset, is_read=False)

    def _mark(self, request, queryset, *, is_read):
        own = queryset.filter(user=request.user)
        marked = own.update(is_read=is_read)
        message = (
            ngettext(
                "%(count)d notification marked as read.",
                "%(count)d notifications marked as read.",
                marked,
            )
            if is_read
            else ngettext(
                "%(count)d notification marked as unread.",
                "%(count)d notifications marked as unread.",
                marked,
            )
        )
        self.message_user(request, message % {"count": marked}, messages.SUCCESS)
        if others := queryset.count() - marked:
            self.message_user(
                request,
                ngettext(
                    "%(count)d notification of somebody else was left as it was: only its "
                    "recipient marks it.",
                    "%(count)d notifications of somebody else were left as they were: only "
                    "their recipients mark them.",
                    others,
                )
                % {"count": others},
                messages.WARNING,
            )


# The admin is the CRM's, for configuration and supervisors; "View site" opens the workspace.
admin.site.site_header = _("Nurture CRM administration")
admin.site.site_title = _("Nurture CRM")
admin.site.index_title = _("Configuration")
admin.site.site_url = "/"
