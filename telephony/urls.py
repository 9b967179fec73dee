from django.urls import path

from telephony import screen_views, views, webhook

app_name = "telephony"

# Each feature adds its own routes here.
urlpatterns: list = [
    path("events/", webhook.events, name="events"),
    path("screen-pop/", screen_views.screen_pop, name="screen_pop"),
    path("agent/", screen_views.agent_state, name="agent_state"),
    path("leads/<int:lead_id>/call/", views.click_to_call, name="click_to_call"),
    path("calls/<int:call_pk>/hangup/", views.hangup, name="hangup"),
    path("calls/<int:call_pk>/transfer/", views.transfer, name="transfer"),
    path("dnd/", views.dnd, name="dnd"),
]
