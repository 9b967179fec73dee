from django.dispatch import receiver

from crm.signals import lead_reassigned
from telephony.models import Call


@receiver(lead_reassigned, dispatch_uid="telephony.calls_follow_their_lead")
def calls_follow_their_lead(sender, lead_id, manager_id, **kwargs):
    """The lead's calls go to its new manager's calls list."""
    Call.objects.filter(lead_id=lead_id).update(lead_manager_id=manager_id)
