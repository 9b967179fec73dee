from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = _("CRM")

    def ready(self):
        # Connecting receivers: a user's own language and time zone, applied from sign-in.
        from crm import preferences  # noqa: F401
