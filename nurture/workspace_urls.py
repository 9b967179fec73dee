"""The workspace's nurturing page (namespace "nurturing", mounted at /nurturing/)."""

from django.urls import path

from nurture import pages

app_name = "nurturing"

urlpatterns = [
    path("", pages.overview, name="overview"),
    path("emails/", pages.emails, name="emails"),
]
