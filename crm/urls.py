from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("nurture/", include("nurture.urls")),
    path("telephony/", include("telephony.urls")),
    # Anymail's ESP webhooks, only for the ESPs in ANYMAIL_WEBHOOK_ESPS, each authenticated.
    path("anymail/", include("telephony.mail.esp_webhooks")),
]
