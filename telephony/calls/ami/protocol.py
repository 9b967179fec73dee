"""The Asterisk Manager Interface (AMI) on the wire, and what can go wrong speaking it.

AMI is a line protocol over TCP: the server greets with one banner line
(`Asterisk Call Manager/9.0.0`), then every message is `Key: Value` lines ended by a blank line.
A client sends actions (`Action: Login`), the server answers each with a `Response:` carrying
the same `ActionID`, and sends `Event:` messages as things happen on the PBX.
"""

import asyncio
from collections.abc import Iterable

BANNER_PREFIX = "Asterisk Call Manager/"
EOL = "\r\n"


class AMIError(Exception):
    """Anything that went wrong talking to the PBX."""


class AMIConnectionLost(AMIError):
    pass


class AMIProtocolError(AMIError):
    pass


class AMILoginFailed(AMIError):
    pass


class AMIActionFailed(AMIError):
    """The PBX answered an action with `Response: Error`."""


def parse_pairs(lines: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return pairs


def parse_message(lines: Iterable[str]) -> dict:
    """One message as a dict. Channel variables (`ChanVariable: NAME=value`, or the older
    `ChanVariable(PJSIP/201-0000000a): NAME=value`) are gathered into a dict of their own."""
    message: dict = {}
    for key, value in parse_pairs(lines):
        if key.startswith("ChanVariable"):
            name, _, variable = value.partition("=")
            message.setdefault("ChanVariable", {})[name.strip()] = variable.strip()
        else:
            message.setdefault(key, value)
    return message


def format_action(action: str, action_id: str, fields: Iterable[tuple[str, str]] = ()) -> bytes:
    """An action as bytes for the wire; `fields` may repeat a key (`Variable`)."""
    lines = [("Action", action), ("ActionID", action_id), *fields]
    for key, value in lines:
        if any(ch in f"{key}{value}" for ch in "\r\n"):
            raise ValueError(f"AMI header {key!r} may not contain a line break")
    return "".join(f"{key}: {value}{EOL}" for key, value in lines).encode() + EOL.encode()


def take_line(raw: bytes, lines: list[str]) -> dict | None:
    """Add one line as read from the wire to `lines`; the message, when it ends one (and
    `lines` is emptied for the next). AMIConnectionLost when the read found the connection
    closed."""
    if not raw:
        raise AMIConnectionLost("the PBX closed the connection")
    line = raw.decode("utf-8", "replace").rstrip("\r\n")
    if line:
        lines.append(line)
        return None
    if not lines:
        return None
    message = parse_message(lines)
    lines.clear()
    return message


async def read_message(reader: asyncio.StreamReader, lines: list[str] | None = None) -> dict:
    """The next message; AMIConnectionLost when the server closes the connection.

    Lines read so far are kept in `lines`, so a read cancelled mid-message (a timeout) loses
    nothing: the next call with the same list carries on."""
    lines = [] if lines is None else lines
    while (message := take_line(await reader.readline(), lines)) is None:
        pass
    return message
