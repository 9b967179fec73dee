"""The call log as a CSV file for Excel (telephony.calls.spreadsheet), with times as
"2025-11-24 12:00:00" in the reader's time zone, which Excel reads as a date and time in any
locale, and durations in whole seconds."""

from itertools import islice

from django.utils import timezone
from django.utils.translation import gettext

from telephony.calls.spreadsheet import new_file, text_cell, whole_cell
from telephony.calls_page.selectors import entries

CHUNK = 500
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def columns() -> list[str]:
    return [
        gettext("Started"),
        gettext("Direction"),
        gettext("State"),
        gettext("Lead"),
        gettext("Number"),
        gettext("Manager"),
        gettext("Duration, s"),
        gettext("Talk time, s"),
        gettext("Recording"),
    ]


def as_csv(user, calls) -> str:
    """`calls` (from selectors.call_log, filtered) as `user` may see them, as CSV text."""
    out, writer = new_file()
    writer.writerow(columns())
    rows = calls.iterator(chunk_size=CHUNK)
    while chunk := list(islice(rows, CHUNK)):
        for entry in entries(user, chunk):
            call = entry.call
            writer.writerow(
                [
                    timezone.localtime(call.started_at).strftime(TIME_FORMAT),
                    call.get_direction_display(),
                    call.get_state_display(),
                    text_cell(entry.lead_text),
                    text_cell(entry.number),
                    text_cell(entry.manager),
                    whole_cell(call.duration),
                    whole_cell(call.talk_time),
                    entry.recording_url,
                ]
            )
    return out.getvalue()
