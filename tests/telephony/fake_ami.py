"""A small Asterisk manager interface on 127.0.0.1, in a thread, for the tests.

It greets with the banner, checks the Login, and then:
- to a connection that logged in for events, replays the next recorded transcript (and drops
  the connection afterwards when told to);
- answers actions (Originate, Hangup, BlindTransfer, Atxfer, Redirect, Bridge, DBPut, DBDel,
  CoreShowChannels, Ping, Logoff) like Asterisk does, recording each action it got.
"""

import asyncio
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from telephony.calls.ami.protocol import parse_pairs

TRANSCRIPTS = Path(__file__).parent / "ami_transcripts"
BANNER = "Asterisk Call Manager/9.0.0"
CRLF = "\r\n"

SUCCESS_MESSAGES = {
    "Originate": "Originate successfully queued",
    "Hangup": "Channel Hungup",
    "BlindTransfer": "Transfer succeeded",
    "Redirect": "Redirect successful",
    "Atxfer": "Atxfer successfully queued",
    "Bridge": "Channels have been bridged",
    "DBPut": "Updated database successfully",
    "DBDel": "Key deleted successfully",
}


def transcript(name: str) -> list[str]:
    """The events of a transcript file, each as it goes over the wire."""
    text = (TRANSCRIPTS / name).read_text()
    blocks = [block.strip("\n") for block in text.split("\n\n") if block.strip()]
    return [CRLF.join(block.split("\n")) + CRLF + CRLF for block in blocks]


def channels(name: str) -> list[dict]:
    """The channels of a recorded CoreShowChannels answer, as the fake server lists them."""
    return [
        {key: value for key, value in parse_pairs(block.strip(CRLF).split(CRLF)) if key != "Event"}
        for block in transcript(name)
    ]


def message(**fields) -> str:
    return (
        "".join(f"{key.replace('_', '-')}: {value}{CRLF}" for key, value in fields.items()) + CRLF
    )


@dataclass
class Session:
    """What one event connection gets after logging in."""

    events: list[str]
    drop: bool = False  # close the connection once they are sent


@dataclass
class FakeAMI:
    username: str = "crm"
    secret: str = "s3cret"
    sessions: list[Session] = field(default_factory=list)
    channels: list[dict] = field(default_factory=list)  # what CoreShowChannels lists
    errors: dict = field(default_factory=dict)  # action -> the error message to answer
    answer_pings: bool = True  # False: a connection that died without closing
    actions: list[dict] = field(default_factory=list)
    logins: int = 0
    refused_logins: int = 0
    pings: int = 0
    port: int = 0

    def __post_init__(self):
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-ami", daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the fake AMI server did not start")
        return self

    def __exit__(self, *exc_info):
        self._loop.call_soon_threadsafe(self._shutdown.set)
        self._thread.join(5)

    def actions_named(self, name: str) -> list[dict]:
        return [action for action in self.actions if action["Action"].lower() == name.lower()]

    def _serve(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self):
        self._shutdown = asyncio.Event()
        self._writers = set()
        self._handlers = set()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._shutdown.wait()
            for writer in list(self._writers):
                writer.close()
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=2)

    async def _connection(self, reader, writer):
        self._handlers.add(asyncio.current_task())
        self._writers.add(writer)
        try:
            writer.write(f"{BANNER}{CRLF}".encode())
            await writer.drain()
            while True:
                action = await self._read_action(reader)
                if action is None:
                    return
                if not await self._answer(action, writer):
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            self._handlers.discard(asyncio.current_task())
            writer.close()

    async def _read_action(self, reader) -> dict | None:
        lines = []
        while True:
            raw = await reader.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\r\n")
            if line:
                lines.append(line)
            elif lines:
                break
        action: dict = {}
        for key, value in parse_pairs(lines):
            if key == "Variable":
                action.setdefault("Variable", []).append(value)
            else:
                action[key] = value
        return action

    async def _answer(self, action: dict, writer) -> bool:
        """Answer one action; False when the connection is to be closed."""
        name, action_id = action.get("Action", ""), action.get("ActionID", "")
        if name.lower() == "login":
            if (action.get("Username"), action.get("Secret")) != (self.username, self.secret):
                self.refused_logins += 1
                await self._send(
                    writer,
                    message(Response="Error", ActionID=action_id, Message="Authentication failed"),
                )
                return False
            self.logins += 1
            await self._send(
                writer,
                message(Response="Success", ActionID=action_id, Message="Authentication accepted"),
            )
            if action.get("Events", "on").lower() != "off" and self.sessions:
                session = self.sessions.pop(0)
                await self._send(writer, *session.events)
                if session.drop:
                    return False
            return True
        if name.lower() == "logoff":
            await self._send(
                writer,
                message(Response="Goodbye", ActionID=action_id, Message="Thanks for all the fish."),
            )
            return False
        if name.lower() == "ping":
            self.pings += 1
            if not self.answer_pings:
                return True
            await self._send(
                writer,
                message(Response="Success", ActionID=action_id, Ping="Pong", Timestamp="0.0"),
            )
            return True
        self.actions.append(action)
        if name in self.errors:
            await self._send(
                writer, message(Response="Error", ActionID=action_id, Message=self.errors[name])
            )
        elif name == "CoreShowChannels":
            await self._core_show_channels(writer, action_id)
        else:
            text = SUCCESS_MESSAGES.get(name, "Success")
            if name == "Redirect" and action.get("ExtraChannel"):
                text = "Dual Redirect successful"
            await self._send(writer, message(Response="Success", ActionID=action_id, Message=text))
        return True

    async def _core_show_channels(self, writer, action_id):
        items = [
            message(Event="CoreShowChannel", ActionID=action_id, **channel)
            for channel in self.channels
        ]
        await self._send(
            writer,
            message(
                Response="Success",
                ActionID=action_id,
                EventList="start",
                Message="Channels will follow",
            ),
            *items,
            message(
                Event="CoreShowChannelsComplete",
                ActionID=action_id,
                EventList="Complete",
                ListItems=len(items),
            ),
        )

    async def _send(self, writer, *messages: str):
        writer.write("".join(messages).encode())
        await writer.drain()


@contextmanager
def as_the_pbx(settings, **more):
    """A FakeAMI on loopback, configured (in pytest-django's `settings`) as the CRM's PBX:
    user crm, secret s3cret, no HTTP click-to-call; `more` sets further TELEPHONY_AMI_*
    settings, e.g. CONTEXT="from-internal"."""
    settings.TELEPHONY_AMI_USERNAME, settings.TELEPHONY_AMI_SECRET = "crm", "s3cret"
    settings.TELEPHONY_CLICK_TO_CALL_URL = ""
    for name, value in more.items():
        setattr(settings, f"TELEPHONY_AMI_{name}", value)
    with FakeAMI() as server:
        settings.TELEPHONY_AMI_HOST, settings.TELEPHONY_AMI_PORT = "127.0.0.1", server.port
        yield server
