"""The call report: calls per manager and day, with totals, as a table or CSV.

Days are the company's (settings.TIME_ZONE), whoever looks: a call at 00:30 in Moscow belongs to
that Moscow day, not to the day before in UTC.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext

from crm.models import user_display_name
from crm.selectors import can_see_all_leads
from telephony.calls import spreadsheet
from telephony.models import Call

IN, OUT = Call.Direction.INBOUND, Call.Direction.OUTBOUND


def company_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def company_today() -> date:
    return timezone.now().astimezone(company_zone()).date()


def managers_for_report(user) -> QuerySet:
    """Whom `user` may pick in the report's manager filter."""
    users = get_user_model().objects.filter(is_active=True, is_staff=True)
    if not can_see_all_leads(user):
        users = users.filter(pk=user.pk)
    return users.select_related("profile").order_by("username")


@dataclass(frozen=True)
class ReportRow:
    day: date | None  # None in a total over several days
    manager: object  # a user; None for calls no manager's extension took
    inbound: int
    outbound: int
    missed: int
    answered: int  # inbound calls somebody answered
    talk_total: int  # seconds, inbound and outbound
    talked: int  # calls with talk time

    @property
    def answered_rate(self) -> float | None:
        """Answered inbound calls, percent of inbound; None without inbound calls."""
        return round(100 * self.answered / self.inbound, 1) if self.inbound else None

    @property
    def talk_average(self) -> int | None:
        """Seconds per call with talk time, rounded; None without such calls."""
        return round(self.talk_total / self.talked) if self.talked else None

    @property
    def manager_name(self) -> str:
        return user_display_name(self.manager) if self.manager else gettext("no manager")


def call_report(user, date_from: date, date_to: date, manager=None) -> list[ReportRow]:
    """Calls per manager and company day from `date_from` to `date_to` (inclusive), as `user`
    may see them: a manager who cannot see all leads gets only their own rows."""
    zone = company_zone()
    calls = Call.objects.exclude(direction=Call.Direction.INTERNAL).filter(
        started_at__gte=datetime.combine(date_from, time.min, tzinfo=zone),
        started_at__lt=datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=zone),
    )
    if not can_see_all_leads(user):
        calls = calls.filter(agent=user)
    if manager is not None:
        calls = calls.filter(agent=manager)
    grouped = (
        calls.annotate(day=TruncDate("started_at", tzinfo=zone))
        .values("day", "agent")
        .annotate(
            inbound=Count("pk", filter=Q(direction=IN)),
            outbound=Count("pk", filter=Q(direction=OUT)),
            missed=Count("pk", filter=Q(direction=IN, state=Call.State.MISSED)),
            answered=Count("pk", filter=Q(direction=IN, answered_at__isnull=False)),
            talk_total=Sum("talk_time", default=0),
            talked=Count("talk_time"),
        )
        .order_by("day", "agent")
    )
    users = get_user_model().objects.select_related("profile")
    managers = users.in_bulk({row["agent"] for row in grouped if row["agent"]})
    rows = [
        ReportRow(
            day=row["day"],
            manager=managers.get(row["agent"]),
            inbound=row["inbound"],
            outbound=row["outbound"],
            missed=row["missed"],
            answered=row["answered"],
            talk_total=row["talk_total"],
            talked=row["talked"],
        )
        for row in grouped
    ]
    return sorted(rows, key=lambda row: (row.day, row.manager is None, row.manager_name))


def total(rows: list[ReportRow]) -> ReportRow:
    """All `rows` added up (the day and the manager are None)."""
    return ReportRow(
        day=None,
        manager=None,
        **{
            name: sum(getattr(row, name) for row in rows)
            for name in ("inbound", "outbound", "missed", "answered", "talk_total", "talked")
        },
    )


def columns() -> list[str]:
    """The report's column titles, in the active language."""
    return [
        gettext("Day"),
        gettext("Manager"),
        gettext("Inbound"),
        gettext("Outbound"),
        gettext("Missed"),
        gettext("Answered inbound"),
        gettext("Answered, %"),
        gettext("Average talk time, s"),
        gettext("Total talk time, s"),
    ]


def as_csv(rows: list[ReportRow]) -> str:
    """The report as a CSV file for Excel (telephony.calls.spreadsheet): a header row, then
    one row per manager and day; seconds and percents whole, empty where there is nothing
    to divide."""
    out, writer = spreadsheet.new_file()
    writer.writerow(columns())
    for row in rows:
        writer.writerow(
            [
                row.day.isoformat(),
                spreadsheet.text_cell(row.manager_name),
                row.inbound,
                row.outbound,
                row.missed,
                row.answered,
                spreadsheet.whole_cell(row.answered_rate),
                spreadsheet.whole_cell(row.talk_average),
                row.talk_total,
            ]
        )
    return out.getvalue()
