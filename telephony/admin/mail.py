"""Incoming mail in the admin: what arrived, whose it is, and attaching unmatched mail by hand."""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from crm.admin import HiddenIsNotFound, QuickList
from crm.forms import VisibleChoiceField
from crm.selectors import can_see_all_leads, leads_visible_to
from telephony.mail import services as mail_services
from telephony.models import InboundEmail


class MatchedFilter(admin.SimpleListFilter):
    title = _("lead found")
    parameter_name = "unmatched"

    def lookups(self, request, model_admin):
        return [("yes", _("not matched")), ("no", _("matched"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(lead=None)
        if self.value() == "no":
            return queryset.exclude(lead=None)
        return queryset


class AttachForm(forms.Form):
    def __init__(self, *args, user, admin_site, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lead"] = VisibleChoiceField(
            queryset=leads_visible_to(user),
            label=_("lead"),
            widget=AutocompleteSelect(InboundEmail._meta.get_field("lead"), admin_site),
        )


@admin.register(InboundEmail)
class InboundEmailAdmin(QuickList, HiddenIsNotFound, admin.ModelAdmin):
    list_display = ["received_at", "sender", "subject", "kind", "lead", "matched_by"]
    list_filter = ["kind", "matched_by", MatchedFilter, "source"]
    list_select_related = ["lead"]
    search_fields = ["from_email", "from_name", "subject", "message_id", "lead__title"]
    date_hierarchy = "received_at"
    fieldsets = [
        (None, {"fields": ["kind", "lead", "matched_by", "outbound_message"]}),
        (
            _("Message"),
            {
                "fields": [
                    "sender",
                    "to",
                    "subject",
                    "sent_at",
                    "received_at",
                    "source",
                    "message_id",
                    "in_reply_to",
                    "references",
                ]
            },
        ),
        (_("Text"), {"fields": ["text_body"]}),
        (_("Headers"), {"fields": ["all_headers"], "classes": ["collapse"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]
    actions = ["attach_to_lead"]

    def get_queryset(self, request):
        """Managers see the mail of their own leads, and the mail nobody's lead wrote."""
        queryset = super().get_queryset(request)
        if can_see_all_leads(request.user):
            return queryset
        return queryset.filter(Q(lead__responsible=request.user) | Q(lead=None))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # A letter is never edited; attaching it to a lead (an action) needs this permission.
        return obj is None and super().has_change_permission(request)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        attach = path(
            "<path:object_id>/attach/",
            self.admin_site.admin_view(self.attach_view),
            name="{}_{}_attach".format(*info),
        )
        return [attach, *super().get_urls()]

    @admin.display(description=_("from"), ordering="from_email")
    def sender(self, inbound):
        if inbound.from_name:
            return f"{inbound.from_name} <{inbound.from_email}>"
        return inbound.from_email

    @admin.display(description=_("text"))
    def text_body(self, inbound):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', inbound.text)

    @admin.display(description=_("headers"))
    def all_headers(self, inbound):
        return format_html(
            '<pre style="white-space: pre-wrap">{}</pre>',
            json.dumps(inbound.headers, ensure_ascii=False, indent=2),
        )

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        context["can_attach"] = bool(
            obj and obj.lead_id is None and super().has_change_permission(request)
        )
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    # --- Attaching unmatched mail to a lead -----------------------------------------------

    @admin.action(description=_("Attach to lead…"), permissions=["change"])
    def attach_to_lead(self, request, queryset):
        return self._attach(request, queryset, action=True)

    def attach_view(self, request, object_id):
        """The same form for one letter, from its page."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        inbound = self.get_object(request, unquote(object_id))
        if inbound is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        response = self._attach(request, self.get_queryset(request).filter(pk=inbound.pk))
        if response is None:
            info = self.opts.app_label, self.opts.model_name
            url = reverse("admin:{}_{}_change".format(*info), args=[inbound.pk])
            return HttpResponseRedirect(url)
        return response

    def _attach(self, request, queryset, *, action=False):
        form = AttachForm(
            request.POST if "apply" in request.POST else None,
            user=request.user,
            admin_site=self.admin_site,
        )
        unmatched = list(queryset.filter(lead=None))
        if form.is_valid():
            lead = form.cleaned_data["lead"]
            attached = sum(
                mail_services.attach_to_lead(letter, lead, request.user) for letter in unmatched
            )
            self.message_user(
                request,
                ngettext(
                    "%(count)d letter attached to %(lead)s.",
                    "%(count)d letters attached to %(lead)s.",
                    attached,
                )
                % {"count": attached, "lead": lead},
                messages.SUCCESS,
            )
            if skipped := queryset.count() - attached:
                self.message_user(
                    request,
                    ngettext(
                        "%(count)d letter already had a lead and was left as it was.",
                        "%(count)d letters already had a lead and were left as they were.",
                        skipped,
                    )
                    % {"count": skipped},
                    messages.WARNING,
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Attach incoming mail to a lead"),
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
            "letters": unmatched,
            "already_matched": queryset.exclude(lead=None).count(),
            "action": action,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        template = "admin/telephony/inboundemail/attach_to_lead.html"
        return TemplateResponse(request, template, context)
