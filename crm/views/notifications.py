"""A user's notifications: all of theirs, newest first; opening one marks it read."""

from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from crm import paging
from crm.models import Notification
from crm.views.access import workspace_page

PER_PAGE = 30


@workspace_page
def notification_list(request):
    notifications = Notification.objects.filter(user=request.user).select_related("lead")
    page = paging.page_of(notifications, request.GET.get("page"), PER_PAGE)
    return TemplateResponse(request, "crm/notifications.html", {"page": page})


@workspace_page
def open_notification(request, notification_id):
    """Marks it read and goes to its lead (or back to the list). Opening is a GET, from a
    link: marking one's own notification read changes nothing anybody else sees."""
    notification = get_object_or_404(Notification, pk=notification_id, user=request.user)
    if not notification.is_read:
        Notification.objects.filter(pk=notification.pk).update(is_read=True)
    if notification.lead_id:
        return redirect("crm:lead_detail", lead_id=notification.lead_id)
    return redirect("crm:notification_list")


@workspace_page
@require_POST
def mark_all_read(request):
    Notification.objects.filter(user=request.user, is_read=False).update(is_read=True)
    return redirect("crm:notification_list")
