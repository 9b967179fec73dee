from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NurtureConfig(AppConfig):
    name = "nurture"
    verbose_name = _("Nurturing")

    def ready(self):
        # Connecting receivers: status changes and ESP events, and nurture's part of exporting
        # and erasing what is held about a lead (crm.privacy).
        from nurture import erasure, export, receivers, workspace  # noqa: F401
