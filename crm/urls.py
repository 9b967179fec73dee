from django.contrib import admin
from django.urls import include, path

from nurture import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),  # monitoring: nurture/health.py
    path("dev/mail/", include("crm.dev_mail")),  # development only: the emails not sent
    path("", include("crm.workspace_urls")),
    path("accounts/", include("crm.account_urls")),
    path("admin/", admin.site.urls),
    path("nurture/", include("nurture.urls")),
    path("nurturing/", include("nurture.workspace_urls")),
    path("telephony/", include("telephony.urls")),
    path("calls/", include("telephony.calls_urls")),
    # Anymail's ESP webhooks, only for the ESPs in ANYMAIL_WEBHOOK_ESPS, each authenticated.
    path("anymail/", include("telephony.mail.esp_webhooks")),
]
