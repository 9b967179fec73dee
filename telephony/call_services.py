"""Writes on calls that people make (the PBX's own writes are in telephony.calls)."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from crm.models import Lead
from telephony import calls
from telephony.models import Call


@transaction.atomic
def choose_lead(call: Call, lead: Lead) -> bool:
    """Settle a call whose number several leads share on `lead`, one of its candidates: the
    call goes on that lead's timeline as if it had been matched at once (an incoming call also
    tells the responsible manager and takes a nurtured lead back to "in progress").

    Returns False and changes nothing when the call already has a lead."""
    locked = Call.objects.select_for_update().get(pk=call.pk)
    if locked.lead_id is not None:
        return False
    if not locked.candidate_leads.filter(pk=lead.pk).exists():
        raise ValidationError(
            _("%(lead)s is not one of the possible leads of this call.") % {"lead": lead},
            code="not_a_candidate",
        )
    locked.lead = lead
    locked.save(update_fields=["lead"])
    calls._record_on_timeline(locked)  # the same entry apply_event makes for a matched call
    call.lead, call.activity_id = lead, locked.activity_id
    return True
