"""A real IMAP server for tests: Dovecot on loopback, with its own configuration, users and
maildirs in a temporary directory, run in the foreground as a subprocess.

Needs Dovecot's IMAP server (Debian/Ubuntu: `apt-get install dovecot-imapd`; the binary is looked
up on PATH, then in /usr/sbin). Without it the tests that use the `dovecot` fixture are skipped,
or fail under CI=true. Works as root (the server's processes then run as `nobody`) and as an
ordinary user (everything runs as that user).

    from tests.dovecot import dovecot_server  # noqa: F401 - the `dovecot` fixture

    def test_it(dovecot):
        dovecot.append(b"From: ...")
"""

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from email.message import Message
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.services import IN_CI
from tests.smtp_server import free_port

START_TIMEOUT = 15  # seconds


def dovecot_binary() -> str | None:
    found = shutil.which("dovecot") or "/usr/sbin/dovecot"
    return found if os.access(found, os.X_OK) else None


def dovecot_version(binary: str) -> tuple[int, int]:
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = re.match(r"(\d+)\.(\d+)", output.strip())
    return (int(found.group(1)), int(found.group(2))) if found else (2, 3)


class Dovecot:
    """One Dovecot server with one user: `with Dovecot() as server: server.client()`."""

    host = "127.0.0.1"
    username = "crm"
    password = "s3cret-imap"

    def __init__(self, binary: str):
        self.binary = binary
        self.version = dovecot_version(binary)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="crm-dovecot-"))
        self.process: subprocess.Popen | None = None
        # As root the server drops its processes to `nobody`; otherwise all is the calling user.
        account = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        self.account = account
        self.group = grp.getgrgid(account.pw_gid).gr_name

    @property
    def log(self) -> str:
        """What the server said: its output at start, then its log file."""
        paths = [self.dir / "output.txt", self.dir / "dovecot.log"]
        return "".join(path.read_text(errors="replace") for path in paths if path.exists())

    def __enter__(self):
        try:
            self._configure()
            with open(self.dir / "output.txt", "wb") as output:
                self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
                    [self.binary, "-F", "-c", str(self.dir / "dovecot.conf")],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as one
                )
            self._wait_until_listening()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            # The server and its children, at once: its state is thrown away anyway (a clean
            # shutdown takes a second).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _configure(self):
        for name in ("run", "state", "mail"):
            (self.dir / name).mkdir()
        (self.dir / "passwd").write_text(
            f"{self.username}:{{PLAIN}}{self.password}:{self.account.pw_uid}:"
            f"{self.account.pw_gid}::{self.dir / 'mail' / self.username}::\n"
        )
        (self.dir / "dovecot.conf").write_text(self._config())
        if os.geteuid() == 0:
            self.dir.chmod(0o755)
            for path in [self.dir / "mail", self.dir / "state", self.dir / "run"]:
                os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def _config(self) -> str:
        user, group, conf = self.account.pw_name, self.group, self.dir
        common = f"""
base_dir = {conf}/run
state_dir = {conf}/state
log_path = {conf}/dovecot.log
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
protocols = imap
listen = {self.host}
ssl = no
auth_mechanisms = plain login
auth_failure_delay = 0
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""
        if self.version >= (2, 4):
            return f"""dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
{common}
auth_allow_cleartext = yes
mail_driver = maildir
mail_path = ~/Maildir
passdb passwd-file {{
  passwd_file_path = {conf}/passwd
}}
userdb passwd-file {{
  passwd_file_path = {conf}/passwd
}}
"""
        return f"""{common}
disable_plaintext_auth = no
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {conf}/passwd
}}
userdb {{
  driver = passwd-file
  args = {conf}/passwd
}}
"""

    def _wait_until_listening(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start:\n{self.log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.02)  # the server is still starting: look again shortly
        raise RuntimeError(f"dovecot did not listen within {START_TIMEOUT}s:\n{self.log}")

    # --- Using it --------------------------------------------------------------------------

    def client(self) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(self.username, self.password)
        return client

    def append(self, message: bytes | Message, folder: str = "INBOX") -> int:
        """Deliver `message` into `folder`; return its UID."""
        raw = message if isinstance(message, bytes) else message.as_bytes()
        with self.client() as client:
            response = client.append(folder, raw)
        found = re.search(rb"APPENDUID \d+ (\d+)", response)
        return int(found.group(1)) if found else 0

    def flags(self, folder: str = "INBOX") -> dict[int, tuple]:
        """Each message's flags, by UID (read without changing them)."""
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            return {
                uid: data[b"FLAGS"]
                for uid, data in client.fetch(client.search("ALL"), ["FLAGS"]).items()
            }


def require_dovecot() -> str:
    binary = dovecot_binary()
    if binary is None:
        message = "Dovecot is not installed (apt-get install dovecot-imapd)"
        if IN_CI:
            pytest.fail(f"{message}, and CI requires it")
        pytest.skip(message)
    return binary


@pytest.fixture(name="dovecot")
def dovecot_server():
    """A fresh Dovecot IMAP server on loopback with an empty mailbox, stopped afterwards."""
    with Dovecot(require_dovecot()) as server:
        yield server
