"""Nurture's part of erasing a person (crm.privacy.lead_erasure): the lead's enrollments and
emails go; a suppression of the address stays, keeping only the address's hash, so that a lead
given that address again is still never emailed."""

from django.db import IntegrityError, transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from crm.erasure import forget_admin_log
from crm.models import Lead
from crm.privacy import lead_erasure
from nurture.models import Enrollment, OutboundMessage, Suppression, address_hash


@receiver(lead_erasure, dispatch_uid="nurture.erasure")
def erase_nurturing(sender, lead, by, **kwargs) -> dict:
    messages = OutboundMessage.objects.filter(enrollment__lead=lead)
    enrollments = Enrollment.objects.filter(lead=lead)
    forget_admin_log(OutboundMessage, messages.values_list("pk", flat=True))
    forget_admin_log(Enrollment, enrollments.values_list("pk", flat=True))
    counts = {
        "nurture.outbound_messages": messages.delete()[0],
        "nurture.enrollments": enrollments.delete()[0],
    }
    counts.update(_erase_suppressions(lead))
    return counts


def _erase_suppressions(lead) -> dict:
    """The address's suppressions, unless another lead still has the address (theirs, then):
    the active one keeps only the hash; lifted ones (a trail with the address) go."""
    if not lead.email or Lead.objects.filter(email=lead.email).exclude(pk=lead.pk).exists():
        return {"nurture.suppressions_hashed": 0, "nurture.suppressions_deleted": 0}
    suppressions = Suppression.objects.filter(address=lead.email)
    forget_admin_log(Suppression, suppressions.values_list("pk", flat=True))
    deleted = suppressions.filter(lifted_at__isnull=False).delete()[0]
    hashed = suppressions.active().update(
        address=None, address_hash=address_hash(lead.email), details={}
    )
    return {"nurture.suppressions_hashed": hashed, "nurture.suppressions_deleted": deleted}


@receiver(post_save, sender=Lead, dispatch_uid="nurture.erasure.address_given_again")
def suppress_an_erased_address_given_again(sender, instance, **kwargs):
    """A lead has an address whose person was erased while it was suppressed: the suppression
    gets the address back (the person gave it to us again), so the dispatcher's and the
    sender's lookups by address find it, and it is not emailed."""
    if not instance.email:
        return
    erased = Suppression.objects.active().filter(
        address__isnull=True, address_hash=address_hash(instance.email)
    )
    if not erased.exists():
        return
    if Suppression.objects.active().filter(address=instance.email).exists():
        return  # suppressed again meanwhile, in the plain
    erased_pk = erased.values_list("pk", flat=True).first()
    try:
        with transaction.atomic():
            Suppression.objects.filter(pk=erased_pk).update(address=instance.email)
    except IntegrityError:  # the same address written back by another save at this moment
        pass
