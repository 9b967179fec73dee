from django.apps import AppConfig
from django.core import checks
from django.utils.translation import gettext_lazy as _


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = _("Telephony")

    def ready(self):
        # Connecting receivers: reassigned leads, Anymail's inbound mail, and telephony's part
        # of exporting and erasing what is held about a lead (crm.privacy).
        from telephony import erasure, export, receivers, workspace  # noqa: F401
        from telephony.mail import receivers as mail_receivers  # noqa: F401
        from telephony.mail.checks import esp_webhooks_are_secured

        checks.register(esp_webhooks_are_secured)
