"""The workspace's pages that crm serves (namespace "crm")."""

from django.urls import path

from crm.views import card, leads, notifications, pipeline, tasks, today

app_name = "crm"

urlpatterns = [
    path("", today.today_page, name="today"),
    path("leads/", leads.lead_list, name="lead_list"),
    path("leads/bulk/", leads.bulk_action, name="lead_bulk"),
    path("leads/new/", card.lead_new, name="lead_new"),
    path("leads/<int:lead_id>/", card.lead_detail, name="lead_detail"),
    path("leads/<int:lead_id>/edit/", card.lead_edit, name="lead_edit"),
    path("leads/<int:lead_id>/status/", card.change_status, name="lead_status"),
    path("leads/<int:lead_id>/notes/", card.add_note, name="lead_note"),
    path("leads/<int:lead_id>/tasks/", tasks.add_task, name="lead_task"),
    path("tasks/<int:task_id>/done/", tasks.complete_task, name="task_done"),
    path("pipeline/", pipeline.pipeline, name="pipeline"),
    path("pipeline/<slug:code>/", pipeline.pipeline_column, name="pipeline_column"),
    path("pipeline/move/<int:lead_id>/", pipeline.move, name="pipeline_move"),
    path("notifications/", notifications.notification_list, name="notification_list"),
    path(
        "notifications/<int:notification_id>/",
        notifications.open_notification,
        name="notification_open",
    ),
    path("notifications/read/", notifications.mark_all_read, name="notifications_read"),
]
