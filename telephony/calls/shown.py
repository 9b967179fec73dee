"""What a manager is shown of a call they may see (the admin, call control's answers).

A manager sees the calls of their own leads and the calls they took themselves, and one of those
can be on a colleague's lead, or have rung on a colleague's extension. Of a colleague, a manager
is shown the display name only: not the colleague's lead (its name, title, timeline entry and the
PBX's raw events, as the screen pop hides them), not the colleague's extension.
"""

from django.db.models import BooleanField, Case, Exists, OuterRef, Q, QuerySet, Value, When
from django.utils.translation import gettext

from crm.models import Profile, user_display_name
from crm.selectors import can_see_all_leads
from telephony.models import Call


def with_hidden_details(user, calls: QuerySet) -> QuerySet:
    """`calls` annotated with what `user` may not see of each: `lead_hidden` (a colleague's
    lead, or one nobody is responsible for), `extension_hidden` and `transferred_to_hidden`
    (a colleague's extension)."""
    if can_see_all_leads(user):
        nothing = Value(False, output_field=BooleanField())
        return calls.annotate(
            lead_hidden=nothing, extension_hidden=nothing, transferred_to_hidden=nothing
        )
    colleagues = Profile.objects.exclude(user=user).exclude(extension="")
    return calls.annotate(
        lead_hidden=Case(
            When(Q(lead__isnull=True) | Q(lead_manager=user), then=Value(False)),
            default=Value(True),
            output_field=BooleanField(),
        ),
        extension_hidden=Exists(colleagues.filter(extension=OuterRef("extension"))),
        transferred_to_hidden=Exists(colleagues.filter(extension=OuterRef("transferred_to"))),
    )


def as_shown_to(user, call: Call) -> Call:
    """`call` read again, with what `user` may not see of it."""
    return with_hidden_details(user, Call.objects.filter(pk=call.pk)).get()


def whose(lead) -> str:
    """In place of a lead the reader may not see: whose it is, so the call can be passed on."""
    if lead.responsible is None:
        return gettext("a lead with no manager")
    return gettext("a lead of %(manager)s") % {"manager": user_display_name(lead.responsible)}
