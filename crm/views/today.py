"""Today: what needs the manager now, most urgent first, and what other apps add to it."""

from datetime import timedelta

from django.template.response import TemplateResponse
from django.utils import timezone

from crm import selectors, today
from crm.models import Notification
from crm.views.access import workspace_page

SHOWN = 10
# A reply or a call that stopped nurturing is news for this long.
STOPPED_RECENTLY = timedelta(days=14)


@workspace_page
def today_page(request):
    user = request.user
    stopped = selectors.stopped_by_the_lead(user, since=timezone.now() - STOPPED_RECENTLY)
    now = timezone.localtime()
    end_of_today = now.replace(hour=23, minute=59, second=59, microsecond=999999)
    # Each group read on its own, soonest first: a backlog of overdue tasks does not push
    # today's off the page.
    tasks = selectors.open_tasks_of(user)
    context = {
        "overdue_tasks": list(tasks.filter(due_at__lt=now)[:SHOWN]),
        "todays_tasks": list(tasks.filter(due_at__gte=now, due_at__lte=end_of_today)[:SHOWN]),
        "upcoming_tasks": list(tasks.filter(due_at__gt=end_of_today)[:SHOWN]),
        "stopped": stopped[:SHOWN],
        "new_leads": selectors.new_leads_not_contacted(user).select_related("status")[:SHOWN],
        "notifications": Notification.objects.filter(user=user, is_read=False).select_related(
            "lead"
        )[:SHOWN],
        "panels": [panel.render(request) for panel in today.panels_for(request)],
    }
    return TemplateResponse(request, "crm/today.html", context)
