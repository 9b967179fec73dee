"""How fast the pages are: the manager workspace's, and the admin's lead list, lead page,
calls list and outbox, at 100,000 leads.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pages_bench \\
        .venv/bin/python benchmarks/pages.py

The database (its name must contain "bench") is created if missing and migrated; every lead,
activity, enrollment, message, call and notification in it is deleted and the benchmark's rows
are loaded afresh (COPY, as benchmarks/nurture.py does). Then Django's test client, with DEBUG
off, a supervisor and a manager logged in with force_login, and what is loaded kept out of full
garbage collections (gc.freeze, as a web worker does), requests each page: a few warm-up
requests, then 20 timed ones; the table shows the median, the p95, the number of queries of one
request and the target. With --rounds N every page is measured N times, the
rounds one after another, and each line is the page's quietest round.
"""

import argparse
import gc
import math
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.nurture import (  # noqa: E402
    Timer,
    configure_environment,
    ensure_postgres_database,
    is_postgres,
    load,
    machine_description,
    vacuum,
)

MANAGERS = 12
FIRST_NAMES = ["Иван", "Ольга", "Пётр", "Анна", "Maria", "Sergey", "Елена", "Дмитрий"]
LAST_NAMES = ["Петров", "Иванова", "Смирнов", "Kuznetsova", "Popov", "Соколова", "Orlov"]
COMPANIES = ["ООО «Ромашка»", "Acme Ltd", "АО «Вектор»", "Globex", "ИП Сидоров"]
CARD_ENTRIES = 200
TIMED, WARM_UP = 20, 3


def wipe() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from crm.models import Activity, Lead, Notification
    from nurture.models import Enrollment, OutboundMessage
    from telephony.models import Call, CallEvent

    models = (CallEvent, Call, OutboundMessage, Enrollment, Activity, Notification, Lead)
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} CASCADE")
    get_user_model().objects.filter(username__startswith="bench-").delete()


def lead_rows(count, manager_ids, statuses, now):
    from crm.models import lead_search_text

    codes = list(statuses)
    for i in range(count):
        first = FIRST_NAMES[i % len(FIRST_NAMES)]
        last = LAST_NAMES[(i // len(FIRST_NAMES)) % len(LAST_NAMES)]
        row = {
            "title": f"Проект {i}" if i % 2 else f"Project {i}",
            "first_name": first,
            "last_name": last,
            "email": f"lead{i}@client.example",
            "phone": f"+7916{i:07d}",
            "phone_raw": f"8 (916) {i:07d}",
            "company": COMPANIES[i % len(COMPANIES)],
            "status_id": statuses["nurturing" if i % 5 == 0 else codes[i % len(codes)]],
            "responsible_id": manager_ids[i % len(manager_ids)],
            "created_at": now - timedelta(minutes=i),
            "updated_at": now - timedelta(minutes=i),
            "status_changed_at": now - timedelta(minutes=i),
        }
        row["search_text"] = lead_search_text(
            first, last, row["email"], row["title"], row["company"]
        )
        yield row


def setup(leads: int, calls: int, timeline: int, enrollments: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from crm.models import Activity, Lead, LeadStatus, Profile
    from nurture.models import Enrollment, OutboundMessage, Sequence
    from telephony.models import Call

    User = get_user_model()
    now = timezone.now()
    with Timer() as t:
        call_command("migrate", interactive=False, verbosity=0)
        wipe()
    print(f"migrate and wipe: {t.seconds:.1f}s")

    with Timer() as t:
        managers = [
            User.objects.create(
                username=f"bench-manager-{n:02d}", first_name=f"Manager {n:02d}", is_staff=True
            )
            for n in range(1, MANAGERS + 1)
        ]
        Group.objects.get(name="Managers").user_set.add(*managers)
        supervisor = User.objects.create(username="bench-supervisor", is_staff=True)
        supervisor.groups.add(Group.objects.get(name="Supervisors"))
        Profile.objects.bulk_create(
            Profile(user=m, display_name=m.first_name, extension=str(100 + n))
            for n, m in enumerate(managers)
        )
        statuses = dict(LeadStatus.objects.values_list("code", "pk"))
        manager_ids = [m.pk for m in managers]
        load(Lead, lead_rows(leads, manager_ids, statuses, now), {})
        lead_ids = list(Lead.objects.order_by("pk").values_list("pk", flat=True))
        responsible = dict(Lead.objects.values_list("pk", "responsible_id"))
    print(f"{leads:,} leads: {t.seconds:.1f}s")

    with Timer() as t:
        sequence = Sequence.objects.order_by("pk").first()
        nurtured = lead_ids[::5][:enrollments]
        load(
            Enrollment,
            (
                {
                    "lead_id": lead_id,
                    "sent_count": 1 + (k + k // MANAGERS) % 6,
                    "state": "active" if (k + k // MANAGERS) % 6 < 5 else "completed",
                    "next_send_at": now + timedelta(days=1 + k % 3),
                    "enrolled_at": now - timedelta(days=20, minutes=k),
                }
                for k, lead_id in enumerate(nurtured)
            ),
            {"sequence": sequence},
        )
        enrolled = list(
            Enrollment.objects.order_by("pk").values_list("pk", "lead_id", "sent_count")
        )
        sent = [
            (pk, lead_id, number, now - timedelta(days=3 * (count - number) + 1, minutes=pk % 600))
            for pk, lead_id, count in enrolled
            for number in range(1, count + 1)
        ]
        load(
            OutboundMessage,
            (
                {
                    "enrollment_id": pk,
                    "number": number,
                    "state": "sent",
                    "sender_id": responsible[lead_id],
                    "lead_manager_id": responsible[lead_id],
                    "scheduled_for": at,
                    "sent_at": at,
                    "created_at": at,
                    "to_email": f"lead{lead_id}@client.example",
                    "subject": f"Решение по проекту «Project {lead_id}»",
                    "body_text": "Добрый день! Есть ли решение по проекту?",
                    "message_id": f"<bench-{pk}-{number}@crm.example>",
                    "attempts": 1,
                }
                for pk, lead_id, number, at in sent
            ),
            {"sequence": sequence},
        )
    print(f"{len(enrolled):,} enrollments, {len(sent):,} sent emails: {t.seconds:.1f}s")

    with Timer() as t:
        called = [lead_ids[(k * 37) % len(lead_ids)] for k in range(calls)]
        load(
            Call,
            (
                {
                    "source": "bench",
                    "call_id": f"call-{k}",
                    "direction": "in" if k % 3 else "out",
                    "from_raw": f"8916{lead_id:07d}",
                    "from_e164": f"+7916{lead_id:07d}",
                    "to_raw": "101",
                    "extension": str(100 + k % MANAGERS),
                    "lead_id": lead_id,
                    "agent_id": responsible[lead_id],
                    "lead_manager_id": responsible[lead_id],
                    "state": "missed" if k % 7 == 0 else "ended",
                    "started_at": now - timedelta(minutes=5 * k),
                    "ended_at": now - timedelta(minutes=5 * k - 2),
                    "duration": 120,
                    "talk_time": 0 if k % 7 == 0 else 100,
                    "last_event_at": now - timedelta(minutes=5 * k - 2),
                    "received_at": now - timedelta(minutes=5 * k - 2),
                }
                for k, lead_id in enumerate(called)
            ),
            {},
        )
    print(f"{calls:,} calls: {t.seconds:.1f}s")

    with Timer() as t:
        card_lead = lead_ids[len(lead_ids) // 2]
        entries = [("email_out", lead_id, at, "Email sent") for _, lead_id, _, at in sent]
        entries += [
            ("call", lead_id, now - timedelta(minutes=5 * k), "Call")
            for k, lead_id in enumerate(called)
        ]
        entries += [
            ("note", card_lead, now - timedelta(hours=k), "Called, will think")
            for k in range(CARD_ENTRIES)
        ]
        k = 0
        while len(entries) < timeline:
            entries.append(
                ("note", lead_ids[(k * 7919) % len(lead_ids)], now - timedelta(minutes=13 * k), "")
            )
            k += 1
        load(
            Activity,
            (
                {
                    "kind": kind,
                    "lead_id": lead_id,
                    "created_at": at,
                    "summary": summary or "Note",
                    "payload": "{}",
                }
                for kind, lead_id, at, summary in entries
            ),
            {},
        )
        with connection.cursor() as cursor:
            # As migration crm.0006 fills it: the newest entry, else the creation.
            cursor.execute("UPDATE crm_lead SET last_activity_at = created_at")
            cursor.execute(
                "UPDATE crm_lead SET last_activity_at = a.at FROM (SELECT lead_id, "
                "max(created_at) AS at FROM crm_activity GROUP BY lead_id) a "
                "WHERE a.lead_id = crm_lead.id"
            )
        vacuum(Lead, Activity, Enrollment, OutboundMessage, Call)
    print(f"{len(entries):,} timeline entries: {t.seconds:.1f}s")
    return {
        "supervisor": supervisor,
        "manager": managers[0],
        "card_lead": card_lead,
        "searched": Lead.objects.filter(responsible=managers[0]).order_by("pk")[50],
    }


def other_format(e164: str) -> str:
    """+79160004242 as a person types it: 8 916 000-42-42."""
    digits = e164[2:]
    return f"8 {digits[:3]} {digits[3:6]}-{digits[6:8]}-{digits[8:]}"


def pages(data) -> list[tuple[str, str, str, int | None, float]]:
    """(name, who, url, query target, time target in ms) for every page measured."""
    from django.urls import reverse

    lead = data["searched"]
    name = f"{lead.last_name} {lead.first_name}".upper()
    searches = [
        ("phone", other_format(lead.phone)),
        ("name", name),
        ("email", lead.email),
    ]
    lead_list = reverse("admin:crm_lead_changelist")
    rows = [
        ("admin lead list", "supervisor", lead_list, None, 50),
        ("admin lead list", "manager", lead_list, None, 50),
    ]
    rows += [
        (f"admin lead search: {what}", who, f"{lead_list}?q={term}", None, 50)
        for what, term in searches
        for who in ("supervisor", "manager")
    ]
    card = reverse("admin:crm_lead_change", args=[data["card_lead"]])
    rows += [
        ("admin lead page (200 entries)", "supervisor", card, None, None),
        ("admin calls list", "manager", reverse("admin:telephony_call_changelist"), None, 50),
        ("admin calls list", "supervisor", reverse("admin:telephony_call_changelist"), None, 50),
        ("admin outbox", "manager", reverse("admin:nurture_outboundmessage_changelist"), None, 50),
        (
            "admin outbox",
            "supervisor",
            reverse("admin:nurture_outboundmessage_changelist"),
            None,
            50,
        ),
    ]

    def workspace(label, name, who, *, query="", queries=None, ms, **kwargs):
        return (label, who, reverse(name, **kwargs) + query, queries, ms)

    for who in ("supervisor", "manager"):
        rows.append(workspace("leads, page 1", "crm:lead_list", who, queries=10, ms=30))
        rows.append(
            workspace("leads, page 50", "crm:lead_list", who, query="?page=50", queries=10, ms=30)
        )
    rows += [
        workspace(f"leads search: {what}", "crm:lead_list", "manager", query=f"?q={term}", ms=30)
        for what, term in searches
    ]
    rows += [
        workspace(
            "lead card (200 entries)",
            "crm:lead_detail",
            "supervisor",
            ms=40,
            args=[data["card_lead"]],
        ),
        workspace("today", "crm:today", "manager", ms=40),
        workspace("pipeline", "crm:pipeline", "manager", ms=50),
        workspace("pipeline", "crm:pipeline", "supervisor", ms=50),
        workspace("calls log", "calls:log", "manager", ms=None),
        workspace("nurturing: which email works", "nurturing:emails", "supervisor", ms=None),
    ]
    return rows


def measure(client, url) -> tuple[float, float, int, int]:
    """(median ms, p95 ms, queries, status code) of `url`."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(WARM_UP):
        client.get(url, secure=True)
    times = []
    for _ in range(TIMED):
        started = time.perf_counter()
        response = client.get(url, secure=True)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        client.get(url, secure=True)
    times.sort()
    p95 = times[math.ceil(0.95 * len(times)) - 1]
    return statistics.median(times), p95, len(queries), response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=17_000)
    parser.add_argument("--timeline", type=int, default=100_000)
    parser.add_argument("--enrollments", type=int, default=20_000)
    parser.add_argument("--reuse", action="store_true", help="measure the rows already loaded")
    parser.add_argument("--only", default="", help="measure only pages whose name contains this")
    parser.add_argument("--force", action="store_true", help="use a database not named *bench*")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every page this many times, keep the quietest",
    )
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database: the numbers are about production.")
    if "bench" not in database_url.rsplit("/", 1)[-1] and not args.force:
        sys.exit(
            "The benchmark deletes every lead, activity, message and call in its database: "
            "name the database so it contains 'bench' (or pass --force)."
        )
    configure_environment()
    os.environ["ALLOWED_HOSTS"] = "testserver"
    ensure_postgres_database(database_url)

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from crm.models import Lead

    assert is_postgres()
    print(machine_description())
    if args.reuse:
        User = get_user_model()
        manager = User.objects.get(username="bench-manager-01")
        card_lead = (
            Lead.objects.filter(activities__isnull=False)
            .values("pk")
            .annotate(n=django.db.models.Count("activities"))
            .order_by("-n")[0]["pk"]
        )
        data = {
            "supervisor": User.objects.get(username="bench-supervisor"),
            "manager": manager,
            "card_lead": card_lead,
            "searched": Lead.objects.filter(responsible=manager).order_by("pk")[50],
        }
    else:
        with Timer() as t:
            data = setup(args.leads, args.calls, args.timeline, args.enrollments)
        print(f"setup: {t.seconds:.0f}s")

    # As a web worker does once it has loaded the CRM (deploy/gunicorn.conf.py)
    gc.collect()
    gc.freeze()
    clients = {}
    for who in ("supervisor", "manager"):
        clients[who] = Client()
        clients[who].force_login(data[who])

    rows = [row for row in pages(data) if not args.only or args.only in row[0]]
    # Each round measures every page once; a page's line is its quietest round (lowest median):
    # a shared machine's bursts hit one round of a page, rarely all of them.
    best = {}
    for _ in range(args.rounds):
        for index, (_label, who, url, _, _) in enumerate(rows):
            measured = measure(clients[who], url)
            if index not in best or measured[0] < best[index][0]:
                best[index] = measured

    header = f"| {'page':<32} | {'who':<10} | median ms | p95 ms | queries | target |"
    print()
    if args.rounds > 1:
        print(f"(each page: the quietest of {args.rounds} rounds)")
    print(header)
    print("|" + "|".join("-" * len(part) for part in header.split("|")[1:-1]) + "|")
    for index, (label, who, _url, query_target, ms_target) in enumerate(rows):
        target = f"≤ {ms_target} ms" if ms_target else "-"
        target += f", ≤ {query_target} q" if query_target else ""
        median, p95, queries, code = best[index]
        note = "" if code == 200 else f" (HTTP {code})"
        print(
            f"| {label:<32} | {who:<10} | {median:9.1f} | {p95:6.1f} | {queries:7d} | "
            f"{target}{note} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
