"""A real SMTP server on loopback for tests: aiosmtpd in a thread, recording what it accepts."""

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


@dataclass
class ReceivedEmail:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage

    def __getitem__(self, header):
        return self.message[header]

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content().replace("\r\n", "\n") if part else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content().replace("\r\n", "\n") if part else ""


@dataclass
class RecordingHandler:
    """Accepts mail and remembers it; `reply_to_data` can make it answer with an error."""

    received: list[ReceivedEmail] = field(default_factory=list)
    reply_to_data: list[str] = field(default_factory=list)  # e.g. ["451 try later"], used once each
    refuse_recipients: set[str] = field(default_factory=set)
    # Accept this many messages, then hang up instead of answering "250" (the reply is lost)
    hang_up_after_accepting: int = 0
    connections: int = 0
    condition: threading.Condition = field(default_factory=threading.Condition)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse_recipients:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.reply_to_data:
            return self.reply_to_data.pop(0)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.condition:
            self.received.append(
                ReceivedEmail(envelope.mail_from, list(envelope.rcpt_tos), message)
            )
            self.condition.notify_all()
        if self.hang_up_after_accepting:
            self.hang_up_after_accepting -= 1
            server.transport.close()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 15) -> list[ReceivedEmail]:
        """Block until `count` emails have arrived (or fail after `timeout` seconds)."""
        with self.condition:
            arrived = self.condition.wait_for(lambda: len(self.received) >= count, timeout)
        assert arrived, f"expected {count} emails, got {len(self.received)}"
        return list(self.received)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SMTPServer:
    def __init__(self, handler: RecordingHandler | None = None):
        self.handler = handler or RecordingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    @property
    def received(self) -> list[ReceivedEmail]:
        return self.handler.received
