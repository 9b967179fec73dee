"""Reads for the calls page: the log as a manager may see it, and the report's days.

Who sees which call is telephony.calls.selectors.calls_visible_to; what of a visible call a
manager may not see (a colleague's lead) is telephony.calls.shown.with_hidden_details.
"""

from dataclasses import dataclass, replace
from datetime import date

from django.db.models import Prefetch, QuerySet
from django.urls import reverse

from crm.models import Lead, user_display_name
from crm.selectors import leads_visible_to
from telephony.calls import reports
from telephony.calls.selectors import calls_visible_to
from telephony.calls.shown import whose, with_hidden_details
from telephony.models import Call


def call_log(user, queryset: QuerySet | None = None) -> QuerySet:
    """The calls with leads `user` may see, newest first, with what a row shows (internal
    calls, between two extensions, are no lead's and not in the log)."""
    calls = Call.objects.all() if queryset is None else queryset
    calls = calls_visible_to(user, calls.exclude(direction=Call.Direction.INTERNAL))
    return (
        with_hidden_details(user, calls)
        .select_related("lead__responsible__profile", "agent__profile")
        .prefetch_related(
            Prefetch(
                "candidate_leads",
                queryset=leads_visible_to(user, Lead.objects.order_by("pk")),
                to_attr="visible_candidates",
            )
        )
        .order_by("-started_at", "-pk")
    )


@dataclass(frozen=True)
class LeadShown:
    name: str
    url: str = ""  # "" when the reader may not open it


@dataclass(frozen=True)
class LogEntry:
    """One call as a row of the log shows it to one reader."""

    call: Call
    leads: list[LeadShown]  # the call's lead, or the possible ones the reader may see
    possible: bool  # the leads are possible ones, not yet chosen
    number: str
    manager: str
    recording_url: str  # "" when not to be played by this reader

    @property
    def lead_text(self) -> str:
        return "; ".join(lead.name for lead in self.leads)

    @property
    def duration(self) -> str:
        return clock(self.call.duration)

    @property
    def talk(self) -> str:
        return clock(self.call.talk_time)


def entries(user, calls) -> list[LogEntry]:
    """`calls` (from call_log) as `user`'s log shows them."""
    return [_entry(user, call) for call in calls]


def _entry(user, call: Call) -> LogEntry:
    if call.lead is None:
        leads = [_lead(lead) for lead in call.visible_candidates]
    elif call.lead_hidden:
        leads = [LeadShown(whose(call.lead))]
    else:
        leads = [_lead(call.lead)]
    number = call.from_raw if call.direction == Call.Direction.INBOUND else call.to_raw
    # A colleague's conversation with a colleague's lead is not for the reader to hear.
    playable = call.recording_url.startswith(("https://", "http://"))
    if call.lead_hidden and call.agent_id != user.pk:
        playable = False
    return LogEntry(
        call=call,
        leads=leads,
        possible=call.lead is None and bool(leads),
        number=number or call.lead_number,
        manager=user_display_name(call.agent) if call.agent else "",
        recording_url=call.recording_url if playable else "",
    )


def _lead(lead: Lead) -> LeadShown:
    return LeadShown(lead.display_name, reverse("crm:lead_detail", args=[lead.pk]))


def clock(seconds: int | None) -> str:
    """Seconds as a clock reads them: "0:45", "12:05", "1:02:03"; "" for none."""
    if seconds is None:
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


# --- The report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportLine:
    row: reports.ReportRow
    talk: str  # the talk time as a clock reads it

    @classmethod
    def of(cls, row: reports.ReportRow) -> "ReportLine":
        return cls(row, clock(row.talk_total))


def per_manager(rows: list[reports.ReportRow]) -> list[ReportLine]:
    """The report's rows added up per manager over the whole period."""
    managers: dict = {}
    for row in rows:
        managers.setdefault(row.manager.pk if row.manager else None, []).append(row)
    totals = [
        replace(reports.total(group), manager=group[0].manager) for group in managers.values()
    ]
    totals.sort(key=lambda row: (row.manager is None, row.manager_name))
    return [ReportLine.of(row) for row in totals]


def per_day(rows: list[reports.ReportRow], days: list[date]) -> list[reports.ReportRow]:
    """All managers' calls added up for each of `days`, a day without calls too."""
    on: dict = {}
    for row in rows:
        on.setdefault(row.day, []).append(row)
    return [replace(reports.total(on.get(day, [])), day=day) for day in days]
