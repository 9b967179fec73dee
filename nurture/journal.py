"""What the mail server accepted, on the worker's own disk, until the database has it.

Between the server's "250 accepted" and the commit that records a message as sent, the
worker can lose its database (a restart, a dropped connection) or die. Without a record the
message would stay `sending` until its lease ran out and then be marked unknown, though it
went. So every acceptance is first appended here, and the lines are replayed into the database
(`nurture.outbox.replay_journals`) when it is back: at worker start, at the start of a send
task after a failure, and before the reconciler marks anything unknown.

Each worker process (each delivering thread of it, with a pool of threads) appends to a file
of its own, CRM_VAR_DIR/journal/<host>-<pid>-<n>.jsonl, and holds an exclusive flock on it for
its whole life. The kernel drops that lock when the process
dies (even by kill -9): a file whose lock can be taken belongs to a dead process, and whoever
replays it removes it. A live process's file may be read (and replayed) by its neighbours, but
only its owner empties it, once the database holds what it says.

One JSON object a line:
    {"claimed": [[<pk>, <attempts>, "<lease ISO>"], ...], "boot": "<boot id>"}   after the
        claim committed;
    {"trying": <pk>}   before the first byte of that email goes to the server;
    {"sent": <message pk>, "message_id": "<Message-ID>", "provider_id": "...", "at": "<ISO>"}
    {"unsent": [[<pk>, <attempts>, "<lease ISO>"], ...]}   claimed, but given up before the
        end of their DATA: these never reached the server and may be claimed again.
So for a process that died, a message claimed and never tried goes back to be sent, one tried
and not known sent stays for the reconciler (unknown), one sent is recorded as sent. The
"claimed" and "trying" lines are not fsynced (that would cost a disk flush per email): they
are believed only while the machine has not rebooted since they were written (the kernel's
boot id), since until then the page cache holds every line a killed process wrote.

Limits: a line is written (os.write, in the kernel's page cache) the moment the server accepts,
which survives the process dying; it is fsynced before the delivery's transaction commits, and
at once when the database fails. A machine that loses power mid-delivery may lose up to a
delivery's worth of lines (about a second of sending): those messages become unknown, as before.
A journal on a machine that never comes back is not seen by the other machines.
"""

import fcntl
import itertools
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""  # unknown: "claimed" lines are then never believed


BOOT_ID = _boot_id()


def folder() -> Path:
    return Path(settings.VAR_DIR) / "journal"


@dataclass
class Journal:
    """This process's journal file (opened on first use, and again after a fork)."""

    path: Path
    fd: int
    pid: int
    accepted: set[int] = field(default_factory=set)  # pks written since the last clear()
    # Tried in this send call, and the backend failed in a way nobody can read: they may have
    # gone, so they are never written as unsent (the sending code resets it per call).
    doubtful: set[int] = field(default_factory=set)

    def write(self, entry: dict) -> None:
        # One write() of one line to a file opened with O_APPEND: never interleaved with
        # another's, and never half there except at the very end after a crash.
        os.write(self.fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())

    def claimed(self, claims: list[tuple[int, int, str]]) -> None:
        if claims:
            self.write({"claimed": [list(claim) for claim in claims], "boot": BOOT_ID})

    def trying(self, pk: int) -> None:
        self.write({"trying": pk})

    def sent(self, pk: int, message_id: str, provider_id: str, at: str) -> None:
        self.write({"sent": pk, "message_id": message_id, "provider_id": provider_id, "at": at})
        self.accepted.add(pk)

    def unsent(self, claims: list[tuple[int, int, str]]) -> None:
        """Messages claimed (pk, attempts, lease expiry) and given up before the server got them."""
        if claims:
            self.write({"unsent": [list(claim) for claim in claims]})

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def is_empty(self) -> bool:
        return os.fstat(self.fd).st_size == 0

    def clear(self) -> None:
        """The database holds everything written so far."""
        if not self.is_empty():
            os.ftruncate(self.fd, 0)
        self.accepted.clear()


_local = threading.local()
_opened = itertools.count(1)


def _own() -> Journal | None:
    journal = getattr(_local, "journal", None)
    return journal if journal is not None and journal.pid == os.getpid() else None


def current() -> Journal:
    """This thread's journal."""
    journal = _own()
    if journal is None:
        journal = _local.journal = _open()
    return journal


def _open() -> Journal:
    directory = folder()
    directory.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    path = directory / f"{socket.gethostname()}-{pid}-{next(_opened)}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    # A file left by an earlier process with the same pid (after a reboot) is taken over as is:
    # its lines are still to be replayed, and this process now answers for them.
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return Journal(path, fd, pid)


@dataclass
class JournalFile:
    path: Path
    entries: list[dict]
    orphan_fd: int | None  # holding the lock of a dead process's file, to remove it after
    own: bool = False

    @property
    def abandoned(self) -> bool:
        """Nobody is sending what it claimed any more: a dead process's, or this thread's own
        between two sends."""
        return self.own or self.orphan_fd is not None


def files() -> Iterator[JournalFile]:
    """Every journal file on this machine with its complete lines: this thread's own, its live
    neighbours' (which only their owners empty), and dead processes' (locked for this caller:
    `finish` removes them)."""
    own = journal.path if (journal := _own()) is not None else None
    directory = folder()
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.jsonl")):
        orphan_fd = None
        if path != own:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # replayed and removed by someone else meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                orphan_fd = fd
            except BlockingIOError:
                os.close(fd)  # its owner is alive
        entries = read(path)
        if entries or orphan_fd is not None:
            yield JournalFile(path, entries, orphan_fd, own=path == own)


def needs_replay() -> bool:
    """Whether this thread's journal holds lines, or a dead process left one on this machine."""
    journal = _own()
    if journal is not None and not journal.is_empty():
        return True
    directory = folder()
    if not directory.is_dir():
        return False
    for path in directory.glob("*.jsonl"):
        if journal is not None and path == journal.path:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True  # nobody holds it: its process is gone
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
    return False


def read(path: Path) -> list[dict]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for line in data.split(b"\n")[:-1]:  # the part after the last newline is unfinished
        try:
            entries.append(json.loads(line))
        except ValueError:
            logger.warning("skipping an unreadable line in %s: %r", path, line[:200])
    return entries


def finish(journal_file: JournalFile) -> None:
    """Its lines are in the database: remove a dead process's file, empty this process's own."""
    if journal_file.orphan_fd is not None:
        journal_file.path.unlink(missing_ok=True)
        os.close(journal_file.orphan_fd)
    elif (journal := _own()) is not None and journal_file.path == journal.path:
        journal.clear()


def release(journal_file: JournalFile) -> None:
    """Replaying failed: leave the file for the next attempt."""
    if journal_file.orphan_fd is not None:
        os.close(journal_file.orphan_fd)
