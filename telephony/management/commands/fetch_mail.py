from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from telephony.mail import imap


class Command(BaseCommand):
    # Help for the command line is in English, as Django's own commands'; what it reports is
    # translated.
    help = (
        "Read new mail from the IMAP mailbox in the MAIL_IMAP_* settings, without marking it "
        "read: replies from leads stop their nurturing, bounces mark their addresses."
    )

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true", help="One pass, then exit (the default).")
        mode.add_argument(
            "--idle",
            action="store_true",
            help="Keep running, waiting for new mail with IMAP IDLE.",
        )
        parser.add_argument(
            "--max-seconds",
            type=float,
            help="With --idle: stop after this many seconds.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=imap.BATCH_SIZE,
            help="Messages fetched per request.",
        )
        parser.add_argument(
            "--backfill-days",
            type=int,
            default=7,
            help="The first time a mailbox is read, start from mail this many days old "
            "(0: today's; -1: all of it).",
        )

    def handle(self, *args, idle, max_seconds, batch_size, backfill_days, **options):
        if max_seconds is not None and not idle:
            raise CommandError(_("--max-seconds goes with --idle."))
        if batch_size < 1:
            raise CommandError(_("--batch-size must be at least 1."))
        try:
            mailbox = imap.Mailbox.from_settings()
        except ImproperlyConfigured as error:
            raise CommandError(_("Set MAIL_IMAP_HOST and MAIL_IMAP_USER first.")) from error
        fetch = {"batch_size": batch_size, "backfill_days": backfill_days}
        if backfill_days < 0:
            fetch["backfill_days"] = None
        if idle:
            try:
                stored = imap.watch(mailbox, max_seconds=max_seconds, **fetch)
            except KeyboardInterrupt:
                return
        else:
            try:
                stored = imap.fetch_once(mailbox, **fetch)
            except imap.CONNECTION_ERRORS as error:
                raise CommandError(
                    _("Cannot read %(mailbox)s: %(error)s") % {"mailbox": mailbox, "error": error}
                ) from error
        self.stdout.write(
            ngettext("%(count)d new message.", "%(count)d new messages.", stored)
            % {"count": stored}
        )
