"""`make run`'s last step: start the Procfile's processes (web, worker, beat) and, on Ctrl-C,
stop them all cleanly.

    python scripts/run.py --env var/development.env [--procfile Procfile]

Each process runs in its own process group with the environment file's variables, PORT (the
environment's, default 8000) and SITE_URL to match; its output is prefixed with its name. On
Ctrl-C (SIGINT), SIGTERM or SIGHUP every process gets SIGTERM, which each of them takes as "finish
and exit 0" (Celery's warm shutdown; Django's autoreloader), and the runner waits for all of
them: exit status 0 when every one exited 0. Only a process still running STOP_TIMEOUT seconds
later is killed, and says so; a second Ctrl-C kills at once. When one process stops by itself
(a crash, say), the others are stopped and the status is 1.

In a terminal, the runner makes its own process group the terminal's foreground for as long as
it runs, so that Ctrl-C reaches only the runner, not `make` above it (which would otherwise die
of the SIGINT and report an error whatever its child did).
"""

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from honcho.environ import parse as parse_env
from honcho.environ import parse_procfile

STOP_TIMEOUT = 20  # seconds the processes get to finish after Ctrl-C
STARTUP_TIMEOUT = 60  # seconds for the web server to answer before the greeting is skipped
# crm/settings.py writes emails to files while developing unless one of these is set.
MAIL_SERVER_VARIABLES = ("EMAIL_URL", "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT")

output_lock = threading.Lock()


def say(text: str, name: str = "run") -> None:
    with output_lock:
        sys.stdout.write(f"{time.strftime('%H:%M:%S')} {name:<6} | {text}\n")
        sys.stdout.flush()


@dataclass
class Process:
    name: str
    command: str
    popen: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        # `exec`: the shell becomes the program, so the signal goes to it, not to a shell.
        self.popen = subprocess.Popen(  # noqa: S603 - the commands are our own Procfile's
            ["/bin/sh", "-c", f"exec {self.command}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        self.reader = threading.Thread(target=self._relay, daemon=True)
        self.reader.start()
        say(f"started with pid {self.popen.pid}: {self.command}")

    def _relay(self) -> None:
        for line in iter(self.popen.stdout.readline, b""):
            say(line.decode(errors="replace").rstrip("\n"), self.name)

    def signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, number)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def environment(env_file: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(parse_env(env_file.read_text()))
    env.setdefault("PORT", "8000")
    env.setdefault("SITE_URL", f"http://127.0.0.1:{env['PORT']}")
    env["PYTHONUNBUFFERED"] = "1"  # output as it happens, not when a buffer fills
    return env


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def greet_when_up(env: dict[str, str], stopping: threading.Event) -> None:
    """Once the web server answers, say where everything is (after the start-up noise)."""
    port, site = int(env["PORT"]), env["SITE_URL"]
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not stopping.is_set() and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            stopping.wait(0.5)
    else:
        return
    if any(env.get(name) for name in MAIL_SERVER_VARIABLES):
        mail = "Emails go to the mail server you configured."
    else:
        folder = env.get("EMAIL_FILE_PATH") or str(Path(env.get("CRM_VAR_DIR", "var")) / "mail")
        mail = f"Emails are not sent: read them at {site}/dev/mail/ (files in {folder}/)."
    for line in (
        f"The CRM is at {site}/ (admin: {site}/admin/, login admin / demo).",
        mail,
        "Ctrl-C stops the web server, the worker and beat.",
    ):
        say(line)


class Terminal:
    """The terminal's foreground while the runner runs (see the module's docstring)."""

    def __init__(self):
        self.fd, self.previous = None, None

    def take(self) -> None:
        try:
            fd = sys.stdin.fileno()
            if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
                return
            previous = os.getpgrp()
            os.setpgid(0, 0)
            self._set_foreground(fd, os.getpgrp())
        except (OSError, ValueError):
            return
        self.fd, self.previous = fd, previous

    def give_back(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self._set_foreground(self.fd, self.previous)

    @staticmethod
    def _set_foreground(fd: int, group: int) -> None:
        # A process not in the foreground that changes it gets SIGTTOU unless it ignores it.
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(fd, group)
        finally:
            signal.signal(signal.SIGTTOU, old)


def run(processes: list[Process], env: dict[str, str]) -> int:
    stop = threading.Event()
    requests = []

    def on_signal(number, frame):
        requests.append(number)
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, on_signal)

    for process in processes:
        process.start(env)
    threading.Thread(target=greet_when_up, args=(env, stop), daemon=True).start()

    while not stop.wait(0.2):
        ended = [process for process in processes if not process.running]
        if ended:
            say(f"{ended[0].name} stopped by itself (status {ended[0].popen.returncode})")
            break
    crashed = not requests

    say("stopping: " + ", ".join(process.name for process in processes if process.running))
    for process in processes:
        if process.running:
            process.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    seen_requests = len(requests)
    while any(process.running for process in processes):
        if time.monotonic() > deadline or len(requests) > seen_requests:
            for process in processes:
                if process.running:
                    say(f"{process.name} did not stop: killed (SIGKILL)")
                    process.signal(signal.SIGKILL)
            break
        time.sleep(0.1)

    clean = not crashed
    for process in processes:
        status = process.popen.wait()
        process.reader.join(timeout=2)
        say(f"{process.name} exited with status {status}")
        clean = clean and status == 0
    return 0 if clean else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", type=Path, required=True, help="environment file")
    parser.add_argument("--procfile", type=Path, default=Path("Procfile"))
    args = parser.parse_args(argv)

    env = environment(args.env)
    port = int(env["PORT"])
    if not port_free(port):
        say(
            f"Port {port} is in use (another `make run`?). Choose another: make run PORT={port + 1}"
        )
        return 1
    procfile = parse_procfile(args.procfile.read_text())
    processes = [Process(name, command) for name, command in procfile.processes.items()]
    terminal = Terminal()
    terminal.take()
    try:
        return run(processes, env)
    finally:
        terminal.give_back()


if __name__ == "__main__":
    sys.exit(main())
