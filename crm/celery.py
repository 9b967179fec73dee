import os

from celery import Celery

import crm.broker  # noqa: F401 - registers the embedded broker's crmfs:// scheme

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

app = Celery("crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
