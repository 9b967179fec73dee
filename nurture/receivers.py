from anymail.signals import tracking
from django.dispatch import receiver

from crm.models import Lead
from crm.signals import lead_reassigned, lead_status_changed
from nurture import delivery_events, services
from nurture.models import Enrollment, OutboundMessage


@receiver(lead_status_changed, dispatch_uid="nurture.status_changed")
def follow_status_change(sender, lead_id, old_code, new_code, cause, **kwargs):
    """Leaving a status halts its sequences; entering one enrolls the lead afresh."""
    if old_code is not None:
        services.halt_for_status_change(lead_id, old_code, services.halt_reason_for(cause))
    lead = Lead.objects.select_related("responsible").get(pk=lead_id)
    if lead.status.code == new_code:
        services.enroll_for_status(lead, new_code)


@receiver(lead_reassigned, dispatch_uid="nurture.messages_follow_their_lead")
def messages_follow_their_lead(sender, lead_id, manager_id, **kwargs):
    """The lead's emails go to its new manager's outbox."""
    # A dispatcher holding one of these enrollments is writing its email with the old manager:
    # wait for it. One that comes after skips them while they are locked here.
    enrollments = list(
        Enrollment.objects.select_for_update().filter(lead_id=lead_id).values_list("pk", flat=True)
    )
    OutboundMessage.objects.filter(enrollment__in=enrollments).update(lead_manager_id=manager_id)


@receiver(tracking, dispatch_uid="nurture.delivery_problem")
def follow_delivery_event(sender, event, esp_name, **kwargs):
    delivery_events.handle_delivery_event(
        event.event_type,
        provider_message_id=event.message_id or "",
        recipient=event.recipient or "",
        metadata=event.metadata or {},
        esp=esp_name,
    )
