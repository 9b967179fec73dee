from django.core.management.base import BaseCommand

from crm.demo import DEMO_PASSWORD, demo_data_exists, load_demo_data


class Command(BaseCommand):
    help = "Load demo users and leads once; does nothing when they are already there."

    def handle(self, *args, **options):
        if demo_data_exists():
            self.stdout.write("Demo data is already loaded.")
        else:
            load_demo_data()
            self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        self.stdout.write(
            "Admin: http://127.0.0.1:8000/admin/  "
            f"login admin / {DEMO_PASSWORD} (also olga: supervisor, valery and maria: managers)"
        )
