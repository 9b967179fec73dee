"""Crash and outage drills for sending: real worker and beat processes, PostgreSQL, a Redis of
the drill's own, and an SMTP sink that logs every Message-ID it accepts.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/drills \\
        .venv/bin/python benchmarks/drills.py --leads 10000

Each drill loads N nurtured leads, all due, starts a sink, a private redis-server (on a free
port, no persistence: a stop loses whatever it held), one `celery worker` (prefork, 2
processes, queues celery and beat) and one `celery beat`, lets the fault happen while the
emails go out, and waits (bounded) until nothing is left to send:

- kill:     kill -9 the whole worker mid-send, and start it again at once;
- redis:    kill Redis mid-send and keep it down 30 s (--outage) while the next emails are
            dispatched; then start it again, empty;
- postgres: three times mid-send, the drill database refuses connections for 0.3 s and every
            session of the worker and beat is terminated (pg_terminate_backend);
- halt:     50 times, the worker's sessions are terminated while it delivers, and the leads
            of the last 10 messages it had claimed (500 in all) are moved out of Nurturing at
            once, in one transaction (its commit time is noted);
- inbound:  every call webhook event (ringing, answered, ended) and every reply letter of 500
            leads is delivered twice, in shuffled order, while the emails go out.

After each: every due email reached the sink at most once (by Message-ID), none after its
lead's halt committed, none lost silently (a message that is not sent is cancelled, failed, or
`unknown` with its manager told), no enrollment stuck, and the time to drain. `--json` prints
the results as JSON (tests/reliability runs a small variant). The database's name must contain
"drill": every lead, enrollment, message, activity and notification in it is deleted.
"""

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import time as daytime
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.nurture import free_port  # noqa: E402

DRILLS = ("kill", "redis", "postgres", "halt", "inbound")
APP_NAME = "drill-worker"  # application_name of the worker's and beat's database sessions
WEBHOOK_SECRET = "drill-webhook-secret"
MANAGERS = 10
PYTHON = sys.executable
CELERY = str(Path(sys.executable).with_name("celery"))


# --- The sink: an SMTP server in a child process, one line per accepted email -----------------


def run_sink(port: int, log: str) -> None:
    import email
    import email.policy

    from aiosmtpd.controller import Controller

    out = open(log, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            out.write(f"{time.time():.6f} {message['Message-ID']}\n")
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes it
    controller.stop()


class Sink:
    def __init__(self, folder: Path):
        self.port = free_port()
        self.log = folder / "sink.log"
        self.log.write_text("")
        self.process = subprocess.Popen(
            [PYTHON, __file__, "--smtp-sink", str(self.port), str(self.log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def received(self) -> list[tuple[float, str]]:
        lines = self.log.read_text().splitlines()
        return [(float(t), mid) for t, mid in (line.split(" ", 1) for line in lines if " " in line)]

    def count(self) -> int:
        return len(self.log.read_text().splitlines())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


# --- Processes: a private Redis, the worker, beat ---------------------------------------------


class Process:
    """A child in a process group of its own, so that kill -9 reaches all of it."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.args, self.env, self.log = args, env, log
        self.process = None

    def start(self) -> "Process":
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # Children a killed parent left behind (prefork pool processes).
        if self.process:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def redis_process(port: int, folder: Path) -> Process:
    return Process(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        os.environ.copy(),
        folder / "redis.log",
    )


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@dataclass
class Config:
    leads: int
    lease: int
    tick: int
    lost_after: int
    outage: float
    timeout: float
    folder: Path
    database_url: str


def child_env(config: Config, redis_port: int, sink_port: int) -> dict:
    separator = "&" if "?" in config.database_url else "?"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "crm.settings",
        "SECRET_KEY": os.environ["SECRET_KEY"],
        "DEBUG": "false",
        "DATABASE_URL": f"{config.database_url}{separator}application_name={APP_NAME}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink_port),
        "EMAIL_USE_TLS": "false",
        "EMAIL_USE_SSL": "false",
        "EMAIL_TIMEOUT": "10",
        "CRM_VAR_DIR": str(config.folder / "var"),
        "NURTURE_SEND_LEASE_SECONDS": str(config.lease),
        "NURTURE_LOST_TASK_SECONDS": str(config.lost_after),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("EMAIL_URL", None)
    return env


def worker_process(config: Config, env: dict, n: int = 1) -> Process:
    return Process(
        [
            CELERY,
            "-A",
            "crm",
            "worker",
            "-Q",
            "celery,beat",
            "--concurrency=2",
            "--loglevel=INFO",
            "-n",
            f"drill{n}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
        config.folder / f"worker{n}.log",
    )


def beat_process(config: Config, env: dict) -> Process:
    return Process(
        [CELERY, "-A", "crm", "beat", "--loglevel=INFO", "--pidfile="],
        env,
        config.folder / "beat.log",
    )


# --- The database -----------------------------------------------------------------------------


def setup(config: Config, *, due_later: int = 0) -> float:
    """Fresh leads, all nurtured and due (the last `due_later` of them two thirds of an outage
    later), their sequence sending at any hour, today and tomorrow working days, beat ticking
    every config.tick s. Returns when the later ones fall due (time.time())."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from benchmarks.nurture import load, vacuum, wipe
    from crm.models import Lead, LeadStatus, Profile
    from nurture.models import CalendarDay, Enrollment, MailboxLimit, Sequence

    wipe()
    User = get_user_model()
    User.objects.filter(username__startswith="drill-").delete()
    managers = User.objects.bulk_create(
        User(username=f"drill-manager-{n}", email=f"manager{n}@crm.example", is_staff=True)
        for n in range(MANAGERS)
    )
    Profile.objects.bulk_create(Profile(user=m, display_name=m.username) for m in managers)
    MailboxLimit.objects.bulk_create(
        MailboxLimit(user=m, per_minute=10**6, per_day=10**6) for m in managers
    )
    now = timezone.now()
    today = timezone.localdate()
    for day in (today, today + timedelta(days=1)):
        CalendarDay.objects.update_or_create(date=day, defaults={"kind": "working_day"})
    sequence = Sequence.objects.order_by("pk").first()  # the default one, from a migration
    Sequence.objects.filter(pk=sequence.pk).update(
        window_start=daytime(0, 0), window_end=daytime(23, 59, 59, 999999)
    )
    nurturing = LeadStatus.objects.get(code="nurturing")
    load(
        Lead,
        (
            {
                "title": f"Project {i}",
                "first_name": "Ivan",
                "last_name": f"Drill{i}",
                "email": f"lead{i}@client.example",
                "phone": f"+7916{i:07d}",
                "phone_raw": f"+7916{i:07d}",
                "responsible_id": managers[i % MANAGERS].pk,
                "language": "ru",
            }
            for i in range(config.leads)
        ),
        {"status": nurturing, "status_changed_at": now - timedelta(days=10)},
    )
    lead_ids = list(Lead.objects.order_by("pk").values_list("pk", flat=True))
    later = set(lead_ids[len(lead_ids) - due_later :]) if due_later else set()
    later_at = now + timedelta(seconds=config.outage * 2 / 3)
    load(
        Enrollment,
        (
            {
                "lead_id": pk,
                "next_send_at": later_at if pk in later else now - timedelta(hours=1),
            }
            for pk in lead_ids
        ),
        {"sequence": sequence, "state": "active", "enrolled_at": now - timedelta(days=10)},
    )
    vacuum(Lead, Enrollment)
    schedule, _ = IntervalSchedule.objects.get_or_create(every=config.tick, period="seconds")
    # Last run a tick ago: beat's first tick comes as soon as it starts.
    PeriodicTask.objects.filter(task="nurture.tasks.dispatch_due").update(
        interval=schedule,
        enabled=True,
        last_run_at=now - timedelta(seconds=config.tick),
        total_run_count=0,
    )
    return later_at.timestamp()


def admin_sql(statement: str, *params) -> None:
    """On the drill database's server, from a connection of its own (autocommit)."""
    import psycopg
    from django.db import connection

    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"] or "postgres",
        password=settings["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(statement, params or None)


def cut_worker_sessions(outage: float = 0.0) -> None:
    """Terminate every session of the worker and beat; with `outage`, the database refuses new
    connections for that long, as during a restart."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if outage:
        admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        admin_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s",
            name,
            APP_NAME,
        )
        time.sleep(outage)
    finally:
        if outage:
            admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def state_counts() -> dict:
    from django.db.models import Count

    from nurture.models import OutboundMessage

    return dict(OutboundMessage.objects.values_list("state").annotate(n=Count("pk")))


def outstanding() -> int:
    """Messages still to be settled, and enrollments due but not dispatched."""
    from django.utils import timezone

    from nurture.models import Enrollment

    counts = state_counts()
    due = Enrollment.objects.filter(state="active", next_send_at__lte=timezone.now()).count()
    return counts.get("queued", 0) + counts.get("sending", 0) + counts.get("retry", 0) + due


# --- A drill ----------------------------------------------------------------------------------


@dataclass
class Result:
    drill: str
    due: int
    at_sink: int = 0
    duplicates: int = 0
    after_halt: int = 0
    halted: int = 0
    worst_after_halt_s: float | None = None
    unknown: int = 0
    unknown_at_sink: int = 0
    unknown_untold: int = 0
    lost_silently: int = 0
    stuck: int = 0
    states: dict = field(default_factory=dict)
    fault_s: float = 0.0
    drain_s: float | None = None
    notes: str = ""


class Drill:
    def __init__(self, name: str, config: Config):
        self.name, self.config = name, config
        self.folder = config.folder / name
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.halts: dict[int, float] = {}  # lead id -> when its halt committed

    def __enter__(self):
        self.sink = Sink(self.folder)
        self.redis_port = free_port()
        self.redis = redis_process(self.redis_port, self.folder).start()
        wait_for_port(self.redis_port)
        config = Config(**{**asdict(self.config), "folder": self.folder})
        self.env = child_env(config, self.redis_port, self.sink.port)
        self.worker = worker_process(config, self.env)
        self.beat = beat_process(config, self.env)
        return self

    def __exit__(self, *exc):
        for process in (self.beat, self.worker, self.redis):
            process.stop()
        self.sink.stop()

    def start(self) -> None:
        self.started = time.monotonic()
        self.worker.start()
        self.beat.start()

    def wait_for_sink(self, count: int) -> None:
        deadline = time.monotonic() + self.config.timeout
        while self.sink.count() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the sink got {self.sink.count()} of {count}")
            time.sleep(0.02)

    def drain(self, since: float) -> float | None:
        """Wait until nothing is outstanding (bounded); seconds from `since`, or None."""
        deadline = time.monotonic() + self.config.timeout
        while time.monotonic() < deadline:
            if outstanding() == 0:
                return time.monotonic() - since
            time.sleep(0.25)
        return None

    def result(self, drain_s: float | None, fault_s: float, notes: str = "") -> Result:
        from crm.models import Notification
        from nurture.models import Enrollment, OutboundMessage

        time.sleep(1)  # anything still on its way to the sink arrives
        received = self.sink.received()
        first_arrival: dict[str, float] = {}
        arrivals: dict[str, int] = {}
        for at, mid in received:
            arrivals[mid] = arrivals.get(mid, 0) + 1
            first_arrival.setdefault(mid, at)
        messages = list(
            OutboundMessage.objects.values_list("state", "message_id", "enrollment__lead_id", "pk")
        )
        result = Result(self.name, due=self.config.leads, fault_s=round(fault_s, 2), notes=notes)
        result.at_sink = len(arrivals)
        result.duplicates = sum(n - 1 for n in arrivals.values())
        result.states = state_counts()
        result.drain_s = None if drain_s is None else round(drain_s, 1)
        result.halted = len(self.halts)
        worst = None
        unknown_leads = []
        for state, mid, lead_id, _pk in messages:
            arrived = first_arrival.get(mid) if mid else None
            if lead_id in self.halts and arrived is not None:
                delta = arrived - self.halts[lead_id]
                worst = delta if worst is None else max(worst, delta)
                if delta > 0:
                    result.after_halt += 1
            if state == "unknown":
                result.unknown += 1
                unknown_leads.append(lead_id)
                if arrived is not None:
                    result.unknown_at_sink += 1
            elif state == "sent" and arrived is None:
                result.lost_silently += 1  # recorded as sent, never arrived
            elif state in ("queued", "sending", "retry"):
                result.stuck += 1
            elif state in ("cancelled", "failed") and arrived is not None:
                result.notes += f" {state} message {mid} arrived;"
        result.worst_after_halt_s = None if worst is None else round(worst, 4)
        told = set(  # the untranslated message, whatever the site's language
            Notification.objects.filter(lead_id__in=unknown_leads)
            .filter(message_id__contains="Sent folder")
            .values_list("lead_id", flat=True)
        )
        result.unknown_untold = len(set(unknown_leads) - told)
        # An enrollment with no message for a step it was due for is stuck too.
        from django.utils import timezone

        result.stuck += Enrollment.objects.filter(
            state="active", next_send_at__lte=timezone.now()
        ).count()
        return result


def drill_kill(config: Config) -> Result:
    setup(config)
    with Drill("kill", config) as drill:
        drill.start()
        drill.wait_for_sink(config.leads * 3 // 10)
        fault = time.monotonic()
        drill.worker.kill()
        drill.worker.start()
        return drill.result(drill.drain(fault), 0.0, "kill -9 of the worker and all its processes")


def drill_redis(config: Config) -> Result:
    from nurture import tasks

    later = config.leads // 2
    later_at = setup(config, due_later=later)
    with Drill("redis", config) as drill:
        drill.start()
        drill.wait_for_sink(min(config.leads - later, max(1, config.leads // 10)))
        fault = time.monotonic()
        drill.redis.kill()  # no persistence: every queued task is gone with it
        # The rest falls due while Redis is down and is dispatched by a tick already running.
        time.sleep(max(0.0, later_at + 0.5 - time.time()))
        app = tasks.send_messages.app
        # Celery reads the variable before its setting.
        os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = drill.env["CELERY_BROKER_URL"]
        app.conf.broker_transport_options = {"max_retries": 1}
        app._pool = app.amqp._producer_pool = None  # the next publish follows app.conf
        dispatched = tasks.dispatch_due()
        rest = config.outage - (time.monotonic() - fault)
        time.sleep(max(0.0, rest))
        drill.redis.start()
        wait_for_port(drill.redis_port)
        back = time.monotonic()
        return drill.result(
            drill.drain(back),
            back - fault,
            f"Redis killed mid-send (its queue lost), {dispatched} dispatched while it was down; "
            "drain counted from its restart",
        )


def drill_postgres(config: Config) -> Result:
    setup(config)
    with Drill("postgres", config) as drill:
        drill.start()
        fault = time.monotonic()
        for share in (2, 4, 6):
            drill.wait_for_sink(config.leads * share // 10)
            cut_worker_sessions(outage=0.3)
        back = time.monotonic()
        return drill.result(
            drill.drain(back),
            back - fault,
            "3 times: every worker and beat session terminated, no connections for 0.3 s",
        )


def drill_halt(config: Config) -> Result:
    from django.db import transaction

    from crm import services
    from crm.models import Lead
    from nurture.models import OutboundMessage

    setup(config)
    rounds, per_round = (50 if config.leads >= 5000 else 20), max(1, min(10, config.leads // 100))
    with Drill("halt", config) as drill:
        drill.start()
        drill.wait_for_sink(config.leads // 10)
        fault = time.monotonic()
        for _ in range(rounds):
            # The last messages of the batches being delivered: still to go when the session dies.
            lead_ids = list(
                OutboundMessage.objects.filter(state="sending")
                .exclude(enrollment__lead_id__in=drill.halts)
                .order_by("-pk")
                .values_list("enrollment__lead_id", flat=True)[:per_round]
            )
            cut_worker_sessions()
            with transaction.atomic():
                for lead in Lead.objects.filter(pk__in=lead_ids):
                    services.change_status(lead, "in_progress")
            committed = time.time()
            drill.halts.update(dict.fromkeys(lead_ids, committed))
            time.sleep(0.2)
        done = time.monotonic()
        return drill.result(
            drill.drain(done),
            done - fault,
            f"{rounds} rounds: the worker's sessions terminated, then the leads of the last "
            f"{per_round} messages it had claimed moved to In progress in one transaction",
        )


def drill_inbound(config: Config) -> Result:
    import email
    import email.policy

    from django.test import Client

    from crm.models import Activity, Lead
    from nurture.models import Enrollment, OutboundMessage
    from telephony.calls.signatures import sign
    from telephony.mail.services import receive_email

    setup(config)
    count = min(500, config.leads)
    with Drill("inbound", config) as drill:
        drill.start()
        drill.wait_for_sink(config.leads // 2)
        fault = time.monotonic()
        leads = list(Lead.objects.order_by("pk")[:count])
        replies = dict(
            OutboundMessage.objects.filter(enrollment__lead__in=leads)
            .exclude(message_id="")
            .values_list("enrollment__lead_id", "message_id")
        )
        deliveries = []
        for n, lead in enumerate(leads):
            if n % 2 == 0 or lead.pk not in replies:
                for kind in ("call.ringing", "call.answered", "call.ended"):
                    event = {
                        "event_id": f"drill-{lead.pk}-{kind}",
                        "type": kind,
                        "call_id": f"drill-call-{lead.pk}",
                        "direction": "in",
                        "from": lead.phone,
                        "to": "+74950000000",
                        "extension": "",
                        "occurred_at": "2026-01-01T12:00:00+03:00",
                        "duration": 30 if kind == "call.ended" else 0,
                    }
                    deliveries += [("call", event)] * 2
            else:
                deliveries += [("mail", (lead, replies[lead.pk]))] * 2
        random.Random(10).shuffle(deliveries)
        client = Client()
        answers: dict[int, int] = {}
        for kind, item in deliveries:
            if kind == "call":
                body = json.dumps(item).encode()
                timestamp = str(int(time.time()))
                response = client.post(
                    "/telephony/events/",
                    body,
                    content_type="application/json",
                    secure=True,
                    headers={
                        "X-Timestamp": timestamp,
                        "X-Signature": sign(WEBHOOK_SECRET, timestamp, body),
                    },
                )
                answers[response.status_code] = answers.get(response.status_code, 0) + 1
            else:
                lead, message_id = item
                letter = email.message_from_string(
                    f"From: {lead.email}\nTo: manager@crm.example\nSubject: Re: project\n"
                    f"Message-ID: <reply-{lead.pk}@client.example>\nIn-Reply-To: {message_id}\n\n"
                    "We decided: yes.\n",
                    policy=email.policy.default,
                )
                receive_email(letter, source="drill")
        done = time.monotonic()
        drain = drill.drain(done)
        # When each halt took the lead's lock (it commits after): no email may arrive later.
        drill.halts = {
            lead_id: ended_at.timestamp()
            for lead_id, ended_at in Enrollment.objects.filter(
                lead__in=leads, state="halted"
            ).values_list("lead_id", "ended_at")
        }
        result = drill.result(drain, done - fault)
        moved = Lead.objects.filter(pk__in=[lead.pk for lead in leads], status__code="in_progress")
        halted = Enrollment.objects.filter(
            lead__in=leads, state="halted", halt_reason__in=["call", "reply"]
        ).count()
        changes = Activity.objects.filter(lead__in=leads, kind="status_change").count()
        result.notes = (
            f"{len(deliveries)} deliveries to {count} leads (webhook answers {answers}); "
            f"{moved.count()} moved to In progress, {halted} halted by a call or reply, "
            f"{changes} status changes on their timelines"
        )
        if moved.count() != count or halted != count or changes != count:
            result.stuck += 1
        return result


RUNNERS = {
    "kill": drill_kill,
    "redis": drill_redis,
    "postgres": drill_postgres,
    "halt": drill_halt,
    "inbound": drill_inbound,
}


def print_table(results: list[Result]) -> None:
    print(
        "| drill | due | at the sink (distinct) | twice | after a halt | unknown (of them "
        "at the sink) | unknown, manager not told | lost silently | stuck | fault | drain |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        after = f"{r.after_halt} of {r.halted}" if r.halted else "-"
        drain = "not drained" if r.drain_s is None else f"{r.drain_s} s"
        print(
            f"| {r.drill} | {r.due:,} | {r.at_sink:,} | {r.duplicates} | {after} | "
            f"{r.unknown} ({r.unknown_at_sink}) | {r.unknown_untold} | {r.lost_silently} | "
            f"{r.stuck} | {r.fault_s} s | {drain} |"
        )
    for r in results:
        print(f"- {r.drill}: states {r.states}; {r.notes.strip()}", end="")
        if r.worst_after_halt_s is not None:
            print(
                f"; latest arrival relative to its halt's commit {r.worst_after_halt_s} s", end=""
            )
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--only", default=",".join(DRILLS), help="comma-separated drills")
    parser.add_argument("--lease", type=int, default=30, help="NURTURE_SEND_LEASE_SECONDS")
    parser.add_argument("--tick", type=int, default=60, help="beat's dispatch_due interval, s")
    parser.add_argument("--lost-after", type=int, default=30, help="NURTURE_LOST_TASK_SECONDS")
    parser.add_argument("--outage", type=float, default=30, help="how long Redis stays down")
    parser.add_argument("--timeout", type=float, default=300, help="max wait to drain, s")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the logs folder")
    parser.add_argument("--folder", type=Path, help="where the logs go (kept); default a new one")
    parser.add_argument("--smtp-sink", nargs=2, metavar=("PORT", "LOG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smtp_sink:
        run_sink(int(args.smtp_sink[0]), args.smtp_sink[1])
        return

    url = os.environ.get("DATABASE_URL", "")
    if "drill" not in url.rsplit("/", 1)[-1]:
        sys.exit("Set DATABASE_URL to a PostgreSQL database whose name contains 'drill'.")
    folder = args.folder or Path(tempfile.mkdtemp(prefix="crm-drills-"))
    folder.mkdir(parents=True, exist_ok=True)
    # Stopped from outside (a test's timeout), the drill still stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    os.environ.setdefault("SECRET_KEY", "drill-only-not-a-secret")
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "crm.settings",
            "DEBUG": "false",
            "CRM_VAR_DIR": str(folder / "var"),
            "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # set per drill
            "ALLOWED_HOSTS": "testserver",
            "TELEPHONY_WEBHOOK_SECRETS": WEBHOOK_SECRET,
            "RATE_LIMIT_WEBHOOKS": "off",
        }
    )
    from benchmarks.nurture import ensure_postgres_database

    if not ensure_postgres_database(url):
        sys.exit("The drills need PostgreSQL.")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    config = Config(
        leads=args.leads,
        lease=args.lease,
        tick=args.tick,
        lost_after=args.lost_after,
        outage=args.outage,
        timeout=args.timeout,
        folder=folder,
        database_url=url,
    )
    results = []
    try:
        for name in args.only.split(","):
            print(f"drill {name}: {args.leads:,} leads ...", file=sys.stderr, flush=True)
            results.append(RUNNERS[name](config))
            print(f"  {asdict(results[-1])}", file=sys.stderr, flush=True)
    finally:
        if args.keep or args.folder:
            print(f"logs in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
