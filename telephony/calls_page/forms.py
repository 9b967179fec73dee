"""The calls page's filters, read from the URL so that every view can be bookmarked.

Days are the company's (settings.TIME_ZONE), as in the call report, so that the log and the
report of the same days count the same calls.
"""

from datetime import date, datetime, time, timedelta

from django import forms
from django.utils.translation import gettext_lazy as _

from crm.forms import ChoiceField, PersonChoiceField
from crm.selectors import can_see_all_leads
from telephony.calls import reports
from telephony.models import Call

REPORT_DAYS = 14  # the report's period unless one is chosen: the last two weeks
MAX_REPORT_DAYS = 366


def _day_field(label):
    return forms.DateField(
        label=label,
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )


class PeriodForm(forms.Form):
    """From one day to another, and (a supervisor) one manager. A manager may choose only
    herself: any other id answers 404 (crm.forms.VisibleChoiceField)."""

    date_from = _day_field(_("First day"))
    date_to = _day_field(_("Last day"))
    manager = PersonChoiceField(
        queryset=None, required=False, label=_("Manager"), empty_label=_("all managers")
    )

    def __init__(self, data, *, user):
        super().__init__(data)
        self.fields["manager"].queryset = reports.managers_for_report(user)
        self.sees_everyone = can_see_all_leads(user)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError(_("The first day is after the last one."))
        return cleaned


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=reports.company_zone())


class LogFilterForm(PeriodForm):
    direction = ChoiceField(
        label=_("Direction"),
        required=False,
        choices=[
            ("", _("Any direction")),
            (Call.Direction.INBOUND, _("Inbound")),
            (Call.Direction.OUTBOUND, _("Outbound")),
        ],
    )
    state = ChoiceField(
        label=_("State"), required=False, choices=[("", _("Any state")), *Call.State.choices]
    )

    field_order = ["direction", "state", "manager", "date_from", "date_to"]

    def filter(self, calls):
        data = self.cleaned_data
        if data["direction"]:
            calls = calls.filter(direction=data["direction"])
        if data["state"]:
            calls = calls.filter(state=data["state"])
        if data["manager"]:
            calls = calls.filter(agent=data["manager"])
        if data["date_from"]:
            calls = calls.filter(started_at__gte=_start_of(data["date_from"]))
        if data["date_to"]:
            calls = calls.filter(started_at__lt=_start_of(data["date_to"] + timedelta(days=1)))
        return calls


class ReportForm(PeriodForm):
    """The report's period: the last REPORT_DAYS days unless chosen, at most MAX_REPORT_DAYS."""

    def __init__(self, data, *, user):
        today = reports.company_today()
        data = data.copy()
        data.setdefault("date_from", (today - timedelta(days=REPORT_DAYS - 1)).isoformat())
        data.setdefault("date_to", today.isoformat())
        super().__init__(data, user=user)
        for name in ("date_from", "date_to"):
            self.fields[name].required = True

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and (end - start).days >= MAX_REPORT_DAYS:
            raise forms.ValidationError(
                _("Choose at most %(count)d days.") % {"count": MAX_REPORT_DAYS}
            )
        return cleaned

    def days(self) -> list[date]:
        start, end = self.cleaned_data["date_from"], self.cleaned_data["date_to"]
        return [start + timedelta(days=n) for n in range((end - start).days + 1)]
