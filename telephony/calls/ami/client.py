"""A short, synchronous AMI connection for one piece of call control: connect, log in (with no
events), send an action, read its answer, log off."""

import itertools
import socket
import uuid

from telephony.calls.ami.protocol import (
    BANNER_PREFIX,
    AMIActionFailed,
    AMIConnectionLost,
    AMILoginFailed,
    AMIProtocolError,
    format_action,
    take_line,
)


class AMIClient:
    def __init__(self, host: str, port: int, username: str, secret: str, *, timeout: float = 5):
        self.host, self.port = host, port
        self.username, self.secret = username, secret
        self.timeout = timeout
        self._ids = (f"crm-{uuid.uuid4().hex[:12]}-{n}" for n in itertools.count(1))
        self._sock: socket.socket | None = None
        self._file = None

    def __enter__(self):
        self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            self._file = self._sock.makefile("rb")
            banner = self._file.readline().decode("utf-8", "replace").strip()
            if not banner.startswith(BANNER_PREFIX):
                raise AMIProtocolError(f"not an Asterisk manager interface ({banner!r})")
            response = self.send(
                "Login",
                [("Username", self.username), ("Secret", self.secret), ("Events", "off")],
            )
            if response.get("Response") != "Success":
                raise AMILoginFailed(response.get("Message") or "login refused")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        try:
            if exc_info[0] is None or not isinstance(exc_info[1], OSError):
                self.send("Logoff")
        except (OSError, AMIConnectionLost):
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._file = self._sock = None

    def send(self, action: str, fields=()) -> dict:
        """Send `action` and return the response to it (events in between are skipped)."""
        action_id = next(self._ids)
        self._sock.sendall(format_action(action, action_id, fields))
        while True:
            message = self._read()
            if "Response" in message and message.get("ActionID", action_id) == action_id:
                message["ActionID"] = action_id
                return message

    def action(self, action: str, fields=()) -> dict:
        """Like `send`, but an `Error` response raises AMIActionFailed with its message."""
        response = self.send(action, fields)
        if response.get("Response") != "Success":
            raise AMIActionFailed(response.get("Message") or response.get("Response", "error"))
        return response

    def list_action(self, action: str, fields=(), *, complete: str) -> list[dict]:
        """An action answered by a list of events, ended by the event `complete`."""
        response = self.action(action, fields)
        items = []
        while True:
            message = self._read()
            if message.get("ActionID") != response["ActionID"]:
                continue
            if message.get("Event") == complete:
                return items
            items.append(message)

    def _read(self) -> dict:
        lines: list[str] = []
        while (message := take_line(self._file.readline(), lines)) is None:
            pass
        return message
