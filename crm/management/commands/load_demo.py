from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from crm.demo import (
    DEMO_PASSWORD,
    USERS,
    demo_data_exists,
    load_demo_data,
    remove_published_password,
)


class Command(BaseCommand):
    help = (
        "Load demo users and leads once; does nothing when they are already there. Only in "
        "development (DEBUG on): elsewhere it refuses, and with --force the demo users get no "
        "password."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="Load the demo data with DEBUG off too; the demo users then get no password.",
        )

    def handle(self, *args, force=False, **options):
        development = settings.DEBUG
        if not development and not force:
            raise CommandError(
                "load_demo adds users with a published password, so it runs only in development "
                "(DEBUG on). To load the demo anyway, without passwords, add --force."
            )
        if demo_data_exists():
            self.stdout.write("Demo data is already loaded.")
        else:
            load_demo_data(password=DEMO_PASSWORD if development else None)
            self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        if development:
            self.stdout.write(
                "Admin: http://127.0.0.1:8000/admin/  "
                f"login admin / {DEMO_PASSWORD} (also olga: supervisor, valery and maria: managers)"
            )
        else:
            # Loaded in development earlier, the same database must not keep the password.
            remove_published_password()
            usernames = ", ".join(username for username, *_ in USERS)
            self.stdout.write(
                f"The demo users ({usernames}) have no password: set one with "
                "`manage.py changepassword <username>` to log in as one of them."
            )
