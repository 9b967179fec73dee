from django.urls import path

from nurture import views

app_name = "nurture"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("enrollments/<int:enrollment_id>/stop/", views.stop, name="stop"),
    path("enrollments/<int:enrollment_id>/restart/", views.restart, name="restart"),
]
