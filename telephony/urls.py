from django.urls import path  # noqa: F401 - used as features add routes

app_name = "telephony"

# Each feature adds its own routes here.
urlpatterns: list = []
