"""The call log as a CSV file that Excel opens as it is, in a Russian locale too:

- UTF-8 with a byte-order mark: without it Excel reads the file in the ANSI code page
  (cp1251) and the Cyrillic turns to mojibake;
- `;` between cells: the list separator of the locales that write a decimal comma (Russian
  among them), which Excel splits a double-clicked CSV file on;
- times as "2025-11-24 12:00:00" in the reader's time zone, which Excel reads as a date and
  time in any locale;
- durations as whole seconds, so no decimal separator is ever needed;
- text a spreadsheet would run as a formula (a number "+7 916…", a name "=…") kept as text.
"""

import csv
import io
from itertools import islice

from django.utils import timezone
from django.utils.translation import gettext

from telephony.calls.reports import _text_cell as text_cell
from telephony.calls_page.selectors import entries

BOM = "\ufeff"
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
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, delimiter=";")
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
                    "" if call.duration is None else call.duration,
                    "" if call.talk_time is None else call.talk_time,
                    entry.recording_url,
                ]
            )
    return out.getvalue()
