from django.urls import path

from nurture import views

app_name = "nurture"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
