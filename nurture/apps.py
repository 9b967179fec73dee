from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NurtureConfig(AppConfig):
    name = "nurture"
    verbose_name = _("Nurturing")

    def ready(self):
        from nurture import receivers  # noqa: F401 - connects the signal receivers
