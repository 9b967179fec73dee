"""The workspace's calls page (namespace "calls", mounted at /calls/)."""

from django.urls import path

from telephony.calls_page import views

app_name = "calls"

urlpatterns = [
    path("", views.call_log, name="log"),
    path("export.csv", views.call_log_csv, name="export"),
    path("report/", views.call_report, name="report"),
]
