"""The report's chart of calls per day, drawn on the server as SVG: one stacked bar a day
(outbound, inbound answered or still open, inbound missed), a scale on the left, the days
below. The template draws what `calls_per_day` measures; the numbers are in a table as well.
"""

import math
from dataclasses import dataclass
from datetime import date

from django.utils.formats import date_format
from django.utils.translation import gettext, ngettext

from telephony.calls.reports import ReportRow

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 36, 8, 12, 28  # room for the scale and the days
MAX_DAY_LABELS, MAX_LONG_LABELS = 16, 9


@dataclass(frozen=True)
class Segment:
    kind: str  # "outbound", "inbound", "missed": the CSS class that colours it
    y: float
    height: float


@dataclass(frozen=True)
class Column:
    row: ReportRow
    x: float
    width: float
    segments: list[Segment]
    label: str  # the day under the bar; "" where there is no room for every day
    label_x: float

    @property
    def calls(self) -> int:
        return self.row.inbound + self.row.outbound


@dataclass(frozen=True)
class Tick:
    value: int
    y: float


@dataclass(frozen=True)
class Chart:
    columns: list[Column]
    ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: float = WIDTH - RIGHT
    baseline: float = HEIGHT - BOTTOM

    @property
    def busiest(self) -> Column | None:
        column = max(self.columns, key=lambda column: column.calls, default=None)
        return column if column and column.calls else None

    @property
    def calls(self) -> int:
        return sum(column.calls for column in self.columns)


def nice_top(value: int) -> int:
    """The scale's top: `value` rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def calls_per_day(days: list[ReportRow]) -> Chart:
    """The chart of `days` (one total row per day, in order, as selectors.per_day makes)."""
    top = nice_top(max((row.inbound + row.outbound for row in days), default=0))
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = HEIGHT - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    # Up to a month the days are numbered; over longer periods fewer of them, with the month.
    long = len(days) > 31
    every = math.ceil(len(days) / (MAX_LONG_LABELS if long else MAX_DAY_LABELS)) or 1

    def tall(count):
        return plot_height * count / top

    columns = []
    for number, row in enumerate(days):
        x = LEFT + number * slot + slot * 0.15
        segments, y = [], baseline
        for kind, count in (
            ("outbound", row.outbound),
            ("inbound", row.inbound - row.missed),
            ("missed", row.missed),
        ):
            if count:
                y -= tall(count)
                segments.append(Segment(kind, round(y, 1), round(tall(count), 1)))
        label = date_format(row.day, "j M" if long else "j") if number % every == 0 else ""
        columns.append(
            Column(
                row, round(x, 1), round(slot * 0.7, 1), segments, label, round(x + slot * 0.35, 1)
            )
        )
    ticks = [Tick(value, round(baseline - tall(value), 1)) for value in _tick_values(top)]
    return Chart(columns, ticks)


def _tick_values(top: int) -> list[int]:
    """From 0 to `top` (1, 2 or 5 times a power of ten) in four or five round steps."""
    if top < 4:
        step = 1
    elif top % 4 == 0:
        step = top // 4
    else:
        step = top // 5
    return list(range(0, top + 1, step))


def title(first: date, last: date) -> str:
    return gettext("Calls per day from %(first)s to %(last)s") % {
        "first": date_format(first, "j M Y"),
        "last": date_format(last, "j M Y"),
    }


def description(chart: Chart) -> str:
    """What the chart shows, in words, for those who do not see it."""
    text = ngettext("In all: %(count)d call.", "In all: %(count)d calls.", chart.calls) % {
        "count": chart.calls
    }
    busiest = chart.busiest
    if busiest:
        text += " " + ngettext(
            "The busiest day: %(day)s, %(count)d call.",
            "The busiest day: %(day)s, %(count)d calls.",
            busiest.calls,
        ) % {"day": date_format(busiest.row.day, "D j M"), "count": busiest.calls}
    return text
