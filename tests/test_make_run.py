"""`make run` in a real terminal (a pseudo-terminal, as a newcomer's shell gives it): web,
worker and beat start on SQLite and the embedded broker, the web port answers, and Ctrl-C stops
all three cleanly: nothing killed, every process exited 0, none left behind, make exits 0."""

import fcntl
import os
import re
import signal
import subprocess
import termios
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.smtp_server import free_port

ROOT = Path(__file__).resolve().parent.parent
# What the suite's own environment sets for itself; a newcomer's shell has none of it.
SUITE_VARIABLES = {
    "DATABASE_URL",
    "DJANGO_SETTINGS_MODULE",
    "CELERY_BROKER_URL",
    "CRM_VAR_DIR",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "DEBUG",
    "PORT",
    "SITE_URL",
}
START_TIMEOUT = 240  # seconds: migrating a fresh database and loading the demo come first
STOP_TIMEOUT = 30  # seconds from Ctrl-C until make has exited


class Terminal:
    """The pseudo-terminal's other end: everything the processes wrote, and a bounded wait."""

    def __init__(self, master: int):
        self.master = master
        self.text = ""
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # every writer has gone
                chunk = b""
            with self.changed:
                self.text += chunk.decode(errors="replace").replace("\r\n", "\n")
                self.changed.notify_all()
            if not chunk:
                return

    def wait_for(self, *pieces: str, timeout: float) -> str:
        with self.changed:
            self.changed.wait_for(lambda: all(piece in self.text for piece in pieces), timeout)
            assert all(piece in self.text for piece in pieces), (
                f"not seen within {timeout} s: {[p for p in pieces if p not in self.text]}\n"
                f"{self.text[-4000:]}"
            )
            return self.text


def _controlling_terminal():
    """In the child, after setsid: stdin (the pseudo-terminal) becomes its controlling terminal,
    with make's process group in the foreground, as a shell would have it."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        pass  # an answer all the same
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_ctrl_c_stops_web_worker_and_beat_cleanly_and_make_exits_0(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in SUITE_VARIABLES}
    env["CRM_VAR_DIR"] = str(tmp_path / "var")
    command = [
        "make",
        "--no-print-directory",
        "-o",
        ".venv/.installed",  # installed already: never reinstall from a test
        "run",
        f"PORT={port}",
        f"DEV_ENV={tmp_path / 'development.env'}",
    ]
    master, slave = os.openpty()
    make = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_controlling_terminal,
    )
    os.close(slave)
    terminal = Terminal(master)
    try:
        text = terminal.wait_for(
            "Ctrl-C stops the web server",
            "celery@",
            "ready.",
            "beat: Starting...",
            timeout=START_TIMEOUT,
        )
        assert answers(f"http://127.0.0.1:{port}/healthz")
        assert f"read them at http://127.0.0.1:{port}/dev/mail/" in text
        pids = [int(pid) for pid in re.findall(r"started with pid (\d+)", text)]
        assert len(pids) == 3

        pressed = time.monotonic()
        os.write(master, b"\x03")  # Ctrl-C: the terminal sends SIGINT to its foreground
        status = make.wait(timeout=STOP_TIMEOUT)
        took = time.monotonic() - pressed
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    # The runner's last words: each process's exit, read before they are checked.
    text = terminal.wait_for(
        *(f"{name} exited with status" for name in ("web", "worker", "beat")), timeout=5
    )
    os.close(master)

    assert status == 0, text[-3000:]
    assert "SIGKILL" not in text and "Error" not in text and "Interrupt" not in text
    for name in ("web", "worker", "beat"):
        assert f"{name} exited with status 0" in text, text[-3000:]
    for pid in pids:  # each process group (runserver's reloader, the worker's pool) is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    print(f"stopped in {took:.1f} s")
