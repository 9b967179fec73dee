from django.apps import AppConfig
from django.core import checks
from django.utils.translation import gettext_lazy as _


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = _("Telephony")

    def ready(self):
        from telephony.mail import receivers  # noqa: F401 - connects the Anymail inbound receiver
        from telephony.mail.checks import esp_webhooks_are_secured

        checks.register(esp_webhooks_are_secured)
