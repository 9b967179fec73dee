"""How fast nurturing runs: dispatching due enrollments, sending, the idle beat tick, and a
raw-SQL ceiling to compare the dispatcher against.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench \\
        .venv/bin/python benchmarks/nurture.py --leads 100000

The database (its name must contain "bench"; without DATABASE_URL, var/bench.sqlite3) is
created if missing and migrated; every lead, enrollment, message, activity and notification in
it is deleted, and the benchmark's rows are loaded afresh, on each run. The Celery broker is
Redis database 14 unless CELERY_BROKER_URL says otherwise; its queue is purged after use.
Everything runs at a simulated "now" (a working Wednesday, 11:00 Moscow time).
"""

import argparse
import cProfile
import os
import platform
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this folder would come first on sys.path and this file would shadow the
# `nurture` app: the project root goes there instead.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NOW = datetime(2025, 3, 12, 11, 0, tzinfo=ZoneInfo("Europe/Moscow"))
SPREAD_SECONDS = 3600  # due moments spread over the hour before NOW (a quarter within grace)
MANAGERS = 50
SQLITE_MAX_LEADS = 10_000
SEQUENCE_NAME = "Дожимаем лида / Lead nurturing"
FIRST_NAMES = ["Ivan", "Olga", "Пётр", "Анна", "Maria", "Sergey", "Elena", "Дмитрий"]
LAST_NAMES = ["Petrov", "Ivanova", "Смирнов", "Kuznetsova", "Popov", "Соколова"]


def configure_environment() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    # Production-like: no per-query debug log.
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "benchmark-only-not-a-secret")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def ensure_postgres_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist; return whether it is PostgreSQL."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    if not config["ENGINE"].endswith("postgresql"):
        return False
    params = {
        "host": config.get("HOST") or "127.0.0.1",
        "port": config.get("PORT") or 5432,
        "user": config.get("USER") or "postgres",
        "password": config.get("PASSWORD") or None,
        "dbname": "postgres",
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
        ).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
            print(f"created database {config['NAME']}")
    return True


def drop_database(url: str) -> None:
    import dj_database_url
    import psycopg
    from django.db import connections
    from psycopg import sql

    connections.close_all()
    config = dj_database_url.parse(url)
    if not config["ENGINE"].endswith("postgresql"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{config['NAME']}{suffix}").unlink(missing_ok=True)
        return
    params = {
        "host": config.get("HOST") or "127.0.0.1",
        "port": config.get("PORT") or 5432,
        "user": config.get("USER") or "postgres",
        "password": config.get("PASSWORD") or None,
        "dbname": "postgres",
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(config["NAME"])))


# --- A counting SMTP sink, run as a child process ---------------------------------------------


def run_smtp_sink(port: int) -> None:
    """Accept every email on 127.0.0.1:`port` and only count it; answer "count" on stdin."""
    from aiosmtpd.controller import Controller

    class Sink:
        count = 0

        async def handle_DATA(self, server, session, envelope):
            self.count += 1
            return "250 Message accepted for delivery"

    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(handler.count, flush=True)
    controller.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SinkProcess:
    def __init__(self):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--smtp-sink", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def count(self) -> int:
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


# --- Setup ------------------------------------------------------------------------------------


class Timer:
    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started


def is_postgres() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


def vacuum(*models) -> None:
    from django.db import connection

    if not is_postgres():
        return
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def wipe() -> None:
    """Remove what an earlier run left (only the benchmark's own kind of rows)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from crm.models import Activity, Lead, Notification
    from nurture.models import Enrollment, OutboundMessage

    tables = [m._meta.db_table for m in (OutboundMessage, Enrollment, Activity, Notification, Lead)]
    with connection.cursor() as cursor:
        if is_postgres():
            quoted = ", ".join(connection.ops.quote_name(table) for table in tables)
            cursor.execute(f"TRUNCATE {quoted} CASCADE")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")
    get_user_model().objects.filter(username__startswith="bench-").delete()


def load(model, rows, constants: dict) -> None:
    """Insert `rows` (dicts of attname -> value) with every other field from `constants` or its
    default: COPY on PostgreSQL, bulk_create elsewhere. No signals, no per-row save()."""
    from django.db import connection, transaction

    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    template = model(**constants)
    if not is_postgres():
        batch = []
        for row in rows:
            batch.append(model(**{**constants, **row}))
            if len(batch) == 5000:
                model.objects.bulk_create(batch)
                batch = []
        model.objects.bulk_create(batch)
        return
    fixed = {
        f.attname: f.get_db_prep_save(f.pre_save(template, add=True), connection) for f in fields
    }
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    names = [f.attname for f in fields]
    with transaction.atomic(), connection.cursor() as cursor:
        copy_sql = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"
        with cursor.cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row([row[name] if name in row else fixed[name] for name in names])


def due_moment(lead_id: int) -> datetime:
    return NOW - timedelta(seconds=lead_id % SPREAD_SECONDS)


def setup(leads: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from crm.models import Lead, LeadStatus, Profile
    from nurture.models import Enrollment, MailboxLimit, Sequence

    User = get_user_model()
    timings = {}
    with Timer() as t:
        call_command("migrate", interactive=False, verbosity=0)
    timings["migrate"] = t.seconds
    with Timer() as t:
        wipe()
    timings["wipe"] = t.seconds

    with Timer() as t:
        managers = User.objects.bulk_create(
            User(
                username=f"bench-manager-{n:02d}",
                email=f"manager{n:02d}@crm.example",
                first_name=f"Manager {n:02d}",
                is_staff=True,
            )
            for n in range(1, MANAGERS + 1)
        )
        if not all(m.pk for m in managers):  # backends that do not return ids
            managers = list(User.objects.filter(username__startswith="bench-manager-"))
        Profile.objects.bulk_create(
            Profile(user=m, display_name=m.first_name, signature=f"Best regards,\n{m.first_name}")
            for m in managers
        )
        MailboxLimit.objects.bulk_create(
            MailboxLimit(user=m, per_minute=leads, per_day=leads) for m in managers
        )
        nurturing = LeadStatus.objects.get(code="nurturing")
        manager_ids = [m.pk for m in managers]
        zones = {8: "Asia/Yekaterinburg", 9: "Europe/Kaliningrad"}
        load(
            Lead,
            (
                {
                    "title": f"Project {i}",
                    "first_name": FIRST_NAMES[i % len(FIRST_NAMES)],
                    "last_name": LAST_NAMES[i % len(LAST_NAMES)],
                    "email": f"lead{i}@client.example",
                    "responsible_id": manager_ids[i % MANAGERS],
                    "language": "ru" if i % 10 < 7 else "en",
                    "time_zone": zones.get(i % 10, ""),
                }
                for i in range(leads)
            ),
            {"status": nurturing, "status_changed_at": NOW - timedelta(days=10)},
        )
    timings["leads"] = t.seconds

    with Timer() as t:
        sequence = Sequence.objects.get(name=SEQUENCE_NAME)
        # A list, not an iterator: the connection is busy with COPY while the rows are written.
        lead_ids = list(Lead.objects.order_by("pk").values_list("pk", flat=True))
        load(
            Enrollment,
            ({"lead_id": lead_id, "next_send_at": due_moment(lead_id)} for lead_id in lead_ids),
            {
                "sequence": sequence,
                "state": Enrollment.State.ACTIVE,
                "enrolled_at": NOW - timedelta(days=10),
            },
        )
    timings["enrollments"] = t.seconds
    with Timer() as t:
        vacuum(Lead, Enrollment)
    timings["vacuum analyze"] = t.seconds
    return timings


def make_due_again(up_to_id: int | None = None) -> None:
    """Put enrollments (all, or those up to an id) back to their first, due step, and drop
    their messages."""
    from django.db import connection, transaction

    from nurture.models import Enrollment, OutboundMessage

    with transaction.atomic():
        messages = OutboundMessage.objects.all()
        enrollments = Enrollment.objects.all()
        if up_to_id is not None:
            messages = messages.filter(enrollment_id__lte=up_to_id)
            enrollments = enrollments.filter(pk__lte=up_to_id)
        messages.delete()
        if is_postgres():
            sql, params = enrollments.values("pk").query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {Enrollment._meta.db_table} SET state = 'active', sent_count = 0, "
                    "halt_reason = '', ended_at = NULL, "
                    f"next_send_at = %s - make_interval(secs => lead_id %% {SPREAD_SECONDS}) "
                    f"WHERE id IN ({sql})",
                    [NOW, *params],
                )
        else:
            rows = list(enrollments.only("pk", "lead_id"))
            for e in rows:
                e.state, e.sent_count, e.next_send_at = "active", 0, due_moment(e.lead_id)
            Enrollment.objects.bulk_update(rows, ["state", "sent_count", "next_send_at"], 2000)


# --- Measurements -----------------------------------------------------------------------------


def raw_sql_ceiling(batch: int) -> tuple[int, float]:
    from django.db import connection, transaction

    from nurture.models import Enrollment

    table = Enrollment._meta.db_table
    sql = (
        f"UPDATE {table} SET sent_count = sent_count + 1, next_send_at = %s "
        f"WHERE id IN (SELECT id FROM {table} WHERE state = 'active' AND next_send_at <= %s "
        "ORDER BY next_send_at LIMIT %s FOR UPDATE SKIP LOCKED)"
    )
    later = NOW + timedelta(days=5)
    rows = 0
    with Timer() as t, connection.cursor() as cursor:
        while True:
            with transaction.atomic():
                cursor.execute(sql, [later, NOW, batch])
            rows += cursor.rowcount
            if cursor.rowcount < batch:
                break
    return rows, t.seconds


def timed_dispatch(batch_size: int, *, enqueue: bool, profile: bool = False):
    """The dispatcher at NOW; with `enqueue`, each batch's sends published as it commits, as
    beat's task does."""
    from nurture import dispatch, tasks

    profiler = cProfile.Profile() if profile else None
    created = []
    with Timer() as t:
        if profiler:
            profiler.enable()
        for batch in dispatch.dispatch_batches(now=NOW, batch_size=batch_size):
            created += batch
            if enqueue:
                tasks.publish_sends(batch)
        if profiler:
            profiler.disable()
    if profiler:
        stats = pstats.Stats(profiler).strip_dirs()
        print("\n--- cProfile of dispatch_due, by own time ---")
        stats.sort_stats("tottime").print_stats(25)
        print("--- by cumulative time ---")
        stats.sort_stats("cumulative").print_stats(30)
    return created, t.seconds


def queue_length() -> int:
    from crm.celery import app

    with app.connection_for_write() as conn:
        client = getattr(conn.default_channel, "client", None)
        return client.llen("celery") if client is not None else -1


def point_email_at(port: int) -> None:
    from django.conf import settings

    from nurture import transport

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    transport.connections.reset()


def batched_sends(message_ids: list[int]) -> tuple[dict, float]:
    """What one worker process does with its tasks: send_messages() on NURTURE_SEND_BATCH
    messages at a time, one after the other."""
    from django.conf import settings

    from nurture import sending

    size = settings.NURTURE_SEND_BATCH
    outcomes: dict[str, int] = {}
    with Timer() as t:
        for start in range(0, len(message_ids), size):
            for outcome in sending.send_messages(message_ids[start : start + size]).values():
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes, t.seconds


def celery_worker_sends(
    message_ids: list[int], sink_port: int, connections: int, timeout: float
) -> float | None:
    """Sends through one `celery worker --pool=solo` subprocess; seconds from enqueueing the first
    task to the last message recorded as sent, or None if it did not finish in `timeout`."""
    from django.db.models import Max

    from crm.celery import app
    from nurture import tasks
    from nurture.models import OutboundMessage

    env = {
        **os.environ,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink_port),
        "EMAIL_USE_TLS": "false",
        "EMAIL_USE_SSL": "false",
        "NURTURE_SEND_CONNECTIONS": str(connections),
    }
    env.pop("EMAIL_URL", None)
    app.control.purge()
    command = [
        str(Path(sys.executable).with_name("celery")),
        *("-A", "crm", "worker", "--pool=solo", "--concurrency=1", "--loglevel=WARNING"),
        *("--without-gossip", "--without-mingle"),
    ]
    with tempfile.TemporaryFile(mode="w+") as log:
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not app.control.ping(timeout=0.5):
                if worker.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the Celery worker did not start:\n{log.read()}")
            sent = OutboundMessage.objects.filter(pk__in=message_ids, state="sent")
            started_at, started = datetime.now(UTC), time.perf_counter()
            tasks.publish_sends(message_ids)
            # Polled slowly, so the polling itself takes little from the worker; the end is the
            # worker's own record of its last send.
            while sent.count() < len(message_ids):
                if time.perf_counter() - started > timeout:
                    return None
                time.sleep(0.5)
            last_sent_at = sent.aggregate(last=Max("sent_at"))["last"]
            return (last_sent_at - started_at).total_seconds()
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            app.control.purge()


def idle_tick_once() -> float:
    import time_machine

    from nurture import tasks

    with time_machine.travel(NOW, tick=True), Timer() as t:
        tasks.dispatch_due()
    return t.seconds


def explain_idle_tick() -> tuple[list[str], str]:
    """Run one idle tick capturing its SQL, then EXPLAIN ANALYZE every statement."""
    import time_machine
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from nurture import tasks

    with time_machine.travel(NOW, tick=True), CaptureQueriesContext(connection) as captured:
        tasks.dispatch_due()
    statements = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].lstrip().upper().startswith("SELECT")
    ]
    report, indexes = [], set()
    for sql in statements:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql)
            plan = [row[0] for row in cursor.fetchall()]
            transaction.set_rollback(True)
        shown = sql if len(sql) < 300 else f"{sql[:140]} ... {sql[-150:]}"
        report.append(shown + "\n    " + "\n    ".join(plan))
        for line in plan:
            if " using " in line.lower():
                indexes.add(line.lower().split(" using ", 1)[1].split()[0])
    return report, ", ".join(sorted(indexes))


# --- Output -----------------------------------------------------------------------------------


def fmt(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def print_table(rows) -> None:
    header = ("measurement", "value", "unit", "notes")
    cells = [header] + [(m, fmt(v), u, n) for m, v, u, n in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    for index, (measurement, value, unit, notes) in enumerate(cells):
        line = f"{measurement:<{widths[0]}}  {value:>{widths[1]}}  {unit:<{widths[2]}}  {notes}"
        print(line.rstrip())
        if index == 0:
            print("-" * (sum(widths) + 6 + max(len(r[3]) for r in cells)))


def machine_description() -> str:
    import django
    from django.db import connection

    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute("SHOW server_version")
            database = f"PostgreSQL {cursor.fetchone()[0]}"
        else:
            cursor.execute("SELECT sqlite_version()")
            database = f"SQLite {cursor.fetchone()[0]}"
    return (
        f"machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}, Django {django.get_version()}, {database}"
    )


# --- Main -------------------------------------------------------------------------------------


class Results:
    """The table's rows; each measurement also notes the machine's load while it ran (this
    machine may be shared, and a busy neighbour shows in every number)."""

    def __init__(self):
        self.rows = []
        self.load_before = 0.0

    def start(self) -> None:
        self.load_before = os.getloadavg()[0]

    def add(self, measurement: str, value, unit: str, notes: str) -> None:
        load = f"load {self.load_before:.1f}->{os.getloadavg()[0]:.1f}"
        self.rows.append((measurement, value, unit, f"{notes}; {load}"))


def measure_ceiling(results: Results) -> None:
    """(d) The dispatcher's claim-and-advance as one UPDATE per 1000 rows, then reset."""
    from nurture.models import Enrollment

    results.start()
    count, seconds = raw_sql_ceiling(1000)
    results.add(
        "(d) raw SQL claim+advance",
        count / seconds,
        "rows/s",
        f"{count:,} rows; UPDATE ... WHERE id IN (SELECT ... LIMIT 1000 FOR UPDATE SKIP LOCKED)",
    )
    with Timer() as t:
        make_due_again()
        vacuum(Enrollment)
    print(f"(d) {count:,} rows in {seconds:.1f}s; reset and VACUUM took {t.seconds:.1f}s")


def measure_dispatch(results: Results, n: int, batch_size: int, args) -> None:
    """(a) All N due with enqueueing off; then a subset enqueued to the real broker."""
    from django.conf import settings

    from crm.celery import app
    from nurture.models import Enrollment

    results.start()
    created, seconds = timed_dispatch(batch_size, enqueue=False, profile=args.profile)
    assert len(created) == n, f"dispatched {len(created):,} of {n:,}"
    results.add(
        "(a) dispatch_due, no enqueue",
        n / seconds,
        "messages/s",
        f"{n:,} due in {seconds:.1f}s, batches of {batch_size:,}; "
        "the dispatcher alone: nothing published",
    )
    print(f"(a) {n:,} messages in {seconds:.1f}s")

    subset = min(args.redis_subset, n)
    if not subset:
        return
    ids = Enrollment.objects.order_by("pk").values_list("pk", flat=True)
    make_due_again(up_to_id=ids[subset - 1])
    app.control.purge()
    results.start()
    created, seconds = timed_dispatch(batch_size, enqueue=True)
    queued = queue_length()
    purged = app.control.purge()
    results.add(
        "(a) dispatch_due + enqueue",
        len(created) / seconds,
        "messages/s",
        f"{len(created):,} due; a send_messages task per {settings.NURTURE_SEND_BATCH} messages, "
        f"to {os.environ['CELERY_BROKER_URL']} "
        f"after each batch commits ({queued:,} were in the queue; purged {purged:,})",
    )
    print(f"(a) {len(created):,} messages dispatched and enqueued in {seconds:.1f}s")


def open_sending_window() -> None:
    """The sends below run at the real clock (a worker process cannot share the simulated one),
    and an email goes only inside its sending window on a working day in the lead's time zone:
    make the window the whole day, and yesterday, today and tomorrow working days."""
    from django.utils import timezone

    from nurture.models import CalendarDay, Sequence

    Sequence.objects.filter(name=SEQUENCE_NAME).update(
        window_start=datetime.min.time(), window_end=datetime.max.time()
    )
    today = timezone.localdate()
    for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
        CalendarDay.objects.update_or_create(
            date=day, defaults={"kind": CalendarDay.Kind.WORKING_DAY, "note": "benchmark"}
        )


def measure_sends(results: Results, args) -> None:
    """(b) Sends in this process (once per number of connections asked for), then through one
    Celery worker, to an SMTP sink process."""
    from django.conf import settings

    from nurture.models import OutboundMessage

    widths = [int(width) for width in args.send_connections.split(",")]
    open_sending_window()
    sink = SinkProcess()
    try:
        point_email_at(sink.port)
        warmup = 200
        wanted = (warmup + args.sends) * len(widths) + args.worker_sends
        queued_ids = list(
            OutboundMessage.objects.filter(state="queued")
            .order_by("pk")
            .values_list("pk", flat=True)[:wanted]
        )
        for width in widths:
            settings.NURTURE_SEND_CONNECTIONS = width
            warmup_ids, queued_ids = queued_ids[:warmup], queued_ids[warmup:]
            timed_ids, queued_ids = queued_ids[: args.sends], queued_ids[args.sends :]
            batched_sends(warmup_ids)
            before = sink.count()
            results.start()
            outcomes, seconds = batched_sends(timed_ids)
            received = sink.count() - before
            results.add(
                f"(b) send_messages, 1 process, {width} conn.",
                len(timed_ids) / seconds,
                "emails/s",
                f"{len(timed_ids):,} messages, nurture.sending.send_messages() on "
                f"{settings.NURTURE_SEND_BATCH} at a time, NURTURE_SEND_CONNECTIONS={width} "
                f"(each reused); outcomes {outcomes}; the sink got {received:,}",
            )
            print(f"(b) {len(timed_ids):,} sends over {width} connection(s) in {seconds:.1f}s")
        worker_ids = queued_ids[: args.worker_sends]
        if not worker_ids:
            return
        results.start()
        seconds = celery_worker_sends(worker_ids, sink.port, widths[-1], timeout=900)
        if seconds is None:
            results.add("(b) celery worker, solo", "timeout", "", f"{len(worker_ids):,} tasks")
            return
        results.add(
            f"(b) celery worker, solo, {widths[-1]} conn.",
            len(worker_ids) / seconds,
            "emails/s",
            f"{len(worker_ids):,} messages in send_messages tasks of {settings.NURTURE_SEND_BATCH} "
            "through Redis to one `celery worker --pool=solo --concurrency=1`, from the first "
            "enqueued to the last sent",
        )
        print(f"(b) the worker sent {len(worker_ids):,} in {seconds:.1f}s")
    finally:
        sink.stop()


def measure_idle_tick(results: Results, n: int, runs: int, postgres: bool) -> list[str]:
    """(c) The beat's every-minute task with nothing due; returns the EXPLAIN output."""
    from crm.models import Lead
    from nurture.models import Enrollment, OutboundMessage

    due_left = Enrollment.objects.filter(state="active", next_send_at__lte=NOW).count()
    assert due_left == 0, f"{due_left} enrollments are still due"
    results.start()
    results.add(
        "(c) idle tick, first after dispatch",
        idle_tick_once() * 1000,
        "ms",
        "before VACUUM: the due index still holds the dispatched rows' old entries",
    )
    vacuum(Enrollment, OutboundMessage, Lead)
    idle_tick_once()
    results.start()
    samples = sorted(idle_tick_once() * 1000 for _ in range(runs))
    p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
    results.add(
        "(c) idle tick, median",
        statistics.median(samples),
        "ms",
        f"{runs} runs of nurture.tasks.dispatch_due() (leases, retries, due), "
        f"{n:,} enrollments, none due",
    )
    plans, indexes = explain_idle_tick() if postgres else ([], "n/a (not PostgreSQL)")
    results.add("(c) idle tick, p95", p95, "ms", f"EXPLAIN: indexes used: {indexes}")
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=None, help="dispatch_due's batch size")
    parser.add_argument("--redis-subset", type=int, default=20_000)
    parser.add_argument("--sends", type=int, default=3_000)
    parser.add_argument("--worker-sends", type=int, default=3_000, help="0 skips the worker run")
    parser.add_argument(
        "--send-connections",
        default="1,3",
        help="NURTURE_SEND_CONNECTIONS values to measure in-process sends with (the last one "
        "for the worker run too)",
    )
    parser.add_argument("--idle-runs", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="cProfile the dispatch run")
    parser.add_argument("--allow-sqlite", action="store_true")
    parser.add_argument("--drop-database", action="store_true", help="drop it at the end")
    parser.add_argument("--force", action="store_true", help="use a database not named *bench*")
    parser.add_argument("--smtp-sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smtp_sink:
        run_smtp_sink(args.smtp_sink)
        return

    # Without DATABASE_URL, a SQLite file of its own: never the project's everyday database.
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}")
    configure_environment()
    database_url = os.environ["DATABASE_URL"]
    if "bench" not in database_url.rsplit("/", 1)[-1] and not args.force:
        sys.exit(
            "The benchmark deletes every lead, enrollment, message, activity and notification "
            "in its database: name the database so it contains 'bench' (or pass --force)."
        )
    postgres = ensure_postgres_database(database_url)
    if not postgres and args.leads > SQLITE_MAX_LEADS:
        if not args.allow_sqlite:
            sys.exit(
                f"Refusing {args.leads:,} leads on SQLite: set DATABASE_URL to PostgreSQL, "
                f"or pass --allow-sqlite (numbers will not mean much), or --leads <= "
                f"{SQLITE_MAX_LEADS:,}."
            )
        print("WARNING: SQLite; the numbers say little about production.")

    import django

    django.setup()
    from django.db import connection

    from nurture import dispatch, schedule

    n = args.leads
    batch_size = args.batch_size or dispatch.BATCH_SIZE
    name = connection.settings_dict["NAME"]
    print(machine_description())
    print(f"database: {name}; broker: {os.environ['CELERY_BROKER_URL']}")
    print(f"simulated now: {NOW.isoformat()}; dispatch batch size {batch_size:,}")

    with Timer() as setup_timer:
        timings = setup(n)
    assert schedule.company_calendar().is_working_day(NOW.date())
    details = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in timings.items())
    print(
        f"setup (not timed below): {n:,} leads, each with an active, due enrollment, in "
        f"{setup_timer.seconds:.1f}s ({details})"
    )

    results = Results()
    if postgres:
        measure_ceiling(results)
    measure_dispatch(results, n, batch_size, args)
    measure_sends(results, args)
    plans = measure_idle_tick(results, n, args.idle_runs, postgres)

    if plans:
        print("\n--- EXPLAIN ANALYZE of the idle tick's queries ---")
        print("\n\n".join(plans))
    print(f"\nnurture benchmark, {n:,} leads")
    print(machine_description())
    print_table(results.rows)
    print(
        "targets on 2 cores: dispatch >= 10,000 messages/s, send >= 500 emails/s per worker "
        "process, idle tick < 10 ms at 1,000,000 enrollments"
    )
    if args.drop_database:
        drop_database(database_url)
        print(f"dropped database {name}")
    else:
        print(f"left database {name} in place (--drop-database drops it)")


if __name__ == "__main__":
    main()
