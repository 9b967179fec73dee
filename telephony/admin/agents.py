"""Agent state in the admin: supervisors see every manager, a manager their own row.

The state follows calls; the one thing a person sets is "away", here or with the badge in the
admin header, and both go through `telephony.calls.pbx.set_away` (also DND at the PBX when it
can).
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from crm.admin import HiddenIsNotFound
from crm.models import user_display_name
from crm.selectors import can_see_all_leads
from telephony.calls import pbx
from telephony.models import AgentState


@admin.register(AgentState)
class AgentStateAdmin(HiddenIsNotFound, admin.ModelAdmin):
    list_display = ["manager", "extension", "state", "away", "changed_at"]
    list_filter = ["state", "away"]
    list_select_related = ["user__profile"]
    search_fields = ["user__username", "user__profile__display_name", "user__profile__extension"]
    ordering = ["user__username"]
    fields = ["user", "state", "away", "changed_at"]
    readonly_fields = ["user", "state", "changed_at"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if can_see_all_leads(request.user):
            return queryset
        return queryset.filter(user=request.user)

    def has_add_permission(self, request):
        return False  # a manager's row appears with their first call or switch

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if "away" in form.changed_data:
            pbx.set_away(obj.user, obj.away)

    @admin.display(description=_("manager"), ordering="user__username")
    def manager(self, state):
        return user_display_name(state.user)

    @admin.display(description=_("extension"), ordering="user__profile__extension")
    def extension(self, state):
        profile = getattr(state.user, "profile", None)
        return profile.extension if profile else ""
