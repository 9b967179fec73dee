import asyncio
import contextlib
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from telephony.calls.ami.listener import AMIListener
from telephony.calls.ami.pump import CallEventPump


class Command(BaseCommand):
    # Help for the command line is in English, as Django's own commands'; what it reports is
    # translated.
    help = (
        "Follow calls on Asterisk through its manager interface (the TELEPHONY_AMI_* settings) "
        "and log them on the leads. Reconnects by itself; stops on SIGINT or SIGTERM."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", help="AMI host (default: TELEPHONY_AMI_HOST).")
        parser.add_argument("--port", type=int, help="AMI port (default: TELEPHONY_AMI_PORT).")
        parser.add_argument("--max-events", type=int, help="Stop after this many AMI events.")
        parser.add_argument("--max-seconds", type=float, help="Stop after this many seconds.")

    def handle(self, *args, host, port, max_events, max_seconds, **options):
        host = host or settings.TELEPHONY_AMI_HOST
        if not host:
            raise CommandError(_("Set TELEPHONY_AMI_HOST (or give --host)."))
        if (max_events is not None and max_events < 1) or (
            max_seconds is not None and max_seconds <= 0
        ):
            raise CommandError(_("--max-events and --max-seconds must be positive."))
        pump = CallEventPump()
        listener = AMIListener(
            host=host,
            port=port or settings.TELEPHONY_AMI_PORT,
            username=settings.TELEPHONY_AMI_USERNAME,
            secret=settings.TELEPHONY_AMI_SECRET,
            on_event=pump,
            max_events=max_events,
            max_seconds=max_seconds,
        )
        events = asyncio.run(self._listen(listener, pump))
        self.stdout.write(
            ngettext(
                "Stopped after %(events)d AMI event (%(applied)d call events applied).",
                "Stopped after %(events)d AMI events (%(applied)d call events applied).",
                events,
            )
            % {"events": events, "applied": pump.applied}
        )

    async def _listen(self, listener: AMIListener, pump: CallEventPump) -> int:
        loop = asyncio.get_running_loop()
        handled = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Only possible in the main thread of a Unix process.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, listener.stop)
                handled.append(signum)
        try:
            return await listener.run()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            await pump.close()
