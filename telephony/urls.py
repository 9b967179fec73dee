from django.urls import path

from telephony import views

app_name = "telephony"

urlpatterns: list = [
    path("events/", views.events, name="events"),
    path("screen-pop/", views.screen_pop, name="screen_pop"),
    path("agent/", views.agent_state, name="agent_state"),
    path("leads/<int:lead_id>/call/", views.click_to_call, name="click_to_call"),
    path("calls/<int:call_pk>/hangup/", views.hangup, name="hangup"),
    path("calls/<int:call_pk>/transfer/", views.transfer, name="transfer"),
    path(
        "calls/<int:call_pk>/attended-transfer/",
        views.attended_transfer,
        name="attended_transfer",
    ),
    path("calls/<int:call_pk>/hold/", views.hold, name="hold"),
    path("calls/<int:call_pk>/resume/", views.resume, name="resume"),
    path("calls/<int:call_pk>/conference/", views.conference, name="conference"),
]
