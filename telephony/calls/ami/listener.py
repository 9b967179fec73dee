"""The reconnecting AMI reader behind `manage.py ami_listen`: log in for events, hand each to a
callback, and reconnect with backoff whenever the connection breaks."""

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from telephony.calls.ami.protocol import (
    BANNER_PREFIX,
    AMIConnectionLost,
    AMIError,
    AMILoginFailed,
    AMIProtocolError,
    format_action,
    read_message,
)

logger = logging.getLogger(__name__)

# Reconnecting: 1 s, doubling up to a minute, each delay shifted by up to ±20 % so that many
# listeners do not all knock at once. Module constants, so tests can shorten them.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
BACKOFF_JITTER = 0.2
CONNECT_TIMEOUT = 10.0
# A quiet connection is asked for a Ping this often; no answer in as long again means it is dead.
PING_INTERVAL = 30.0


def backoff_delay(attempt: int) -> float:
    delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**attempt)
    return min(BACKOFF_MAX, delay * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER))


class _Stopped(Exception):
    pass


class AMIListener:
    """Log in, hand every event to `on_event`, and reconnect with backoff whenever the connection
    breaks, until `stop()` (a signal), `max_events` events or `max_seconds` seconds."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        on_event: Callable[[dict], Awaitable[None]],
        events: str = "call,cdr",
        max_events: int | None = None,
        max_seconds: float | None = None,
    ):
        self.host, self.port = host, port
        self.username, self.secret = username, secret
        self.on_event = on_event
        self.events = events
        self.max_events = max_events
        self.max_seconds = max_seconds
        self.events_seen = 0
        self.logins = 0
        self._logged_in = False
        self._stop = asyncio.Event()
        self._action_ids = (f"crm-listener-{n}" for n in range(1, 1 << 62))

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> int:
        """Listen until told to stop; returns how many events were read."""
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.max_seconds, self.stop) if self.max_seconds else None
        attempt = 0
        try:
            while not self.stopping:
                try:
                    await self._session()
                except _Stopped:
                    break
                except (TimeoutError, OSError, AMIError) as error:
                    if self.stopping:
                        break
                    if self._logged_in:  # it worked for a while: start the backoff afresh
                        attempt, self._logged_in = 0, False
                    delay = backoff_delay(attempt)
                    attempt += 1
                    logger.warning(
                        "AMI %s:%s: %s; reconnecting in %.1f s (attempt %d)",
                        self.host,
                        self.port,
                        error or type(error).__name__,
                        delay,
                        attempt,
                    )
                    with contextlib.suppress(_Stopped):
                        await self._until_stopped(asyncio.sleep(delay))
        finally:
            if timer:
                timer.cancel()
        logger.info("AMI %s:%s: stopped after %d events", self.host, self.port, self.events_seen)
        return self.events_seen

    async def _session(self) -> None:
        reader, writer = await self._until_stopped(
            asyncio.wait_for(asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT)
        )
        self._partial: list[str] = []
        try:
            await self._login(reader, writer)
            self.logins += 1
            self._logged_in = True
            logger.info("AMI %s:%s: logged in as %s", self.host, self.port, self.username)
            while True:
                message = await self._next_message(reader, writer)
                if "Event" not in message:
                    continue  # the answer to our Ping
                try:
                    await self.on_event(message)
                except Exception:  # one bad event must not stop the others
                    logger.exception("AMI event could not be handled: %r", message)
                self.events_seen += 1
                if self.max_events and self.events_seen >= self.max_events:
                    self.stop()
                if self.stopping:
                    await self._logoff(writer)
                    raise _Stopped
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _login(self, reader, writer) -> None:
        banner = await self._until_stopped(asyncio.wait_for(reader.readline(), CONNECT_TIMEOUT))
        banner = banner.decode("utf-8", "replace").strip()
        if not banner.startswith(BANNER_PREFIX):
            raise AMIProtocolError(f"not an Asterisk manager interface (greeted with {banner!r})")
        action_id = next(self._action_ids)
        writer.write(
            format_action(
                "Login",
                action_id,
                [("Username", self.username), ("Secret", self.secret), ("Events", self.events)],
            )
        )
        await writer.drain()
        while True:
            message = await self._until_stopped(
                asyncio.wait_for(read_message(reader, self._partial), CONNECT_TIMEOUT)
            )
            if message.get("ActionID") == action_id or "Response" in message:
                break
        if message.get("Response") != "Success":
            raise AMILoginFailed(f"login refused: {message.get('Message', 'no reason given')}")

    async def _next_message(self, reader, writer) -> dict:
        try:
            return await self._until_stopped(
                read_message(reader, self._partial), timeout=PING_INTERVAL
            )
        except TimeoutError:
            writer.write(format_action("Ping", next(self._action_ids)))
            await writer.drain()
        try:
            return await self._until_stopped(
                read_message(reader, self._partial), timeout=PING_INTERVAL
            )
        except TimeoutError:
            raise AMIConnectionLost("no answer to a ping") from None

    async def _logoff(self, writer) -> None:
        with contextlib.suppress(OSError):
            writer.write(format_action("Logoff", next(self._action_ids)))
            await writer.drain()

    async def _until_stopped(self, awaitable, timeout: float | None = None):
        """Await `awaitable`, unless a stop comes first (then _Stopped) or `timeout` passes."""
        task = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait(
                {task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if self.stopping:
            raise _Stopped
        raise TimeoutError
