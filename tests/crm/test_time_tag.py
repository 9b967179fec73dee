"""The time_tag filter writes what Django's date filter writes, in every language and zone."""

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.template import Context, Template
from django.utils import timezone, translation

MOMENTS = [
    datetime(2026, 1, 1, 0, 0, tzinfo=UTC) + timedelta(days=d, hours=h, minutes=m)
    for d in range(0, 365, 23)
    for h, m in ((0, 0), (9, 5), (21, 59))
]
MOMENTS.append(datetime(2026, 3, 29, 0, 30, 12, 345678, tzinfo=UTC))


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("zone", ["Europe/Moscow", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize(
    "format", ["D j M H:i", "D j M Y H:i", "D j M Y, H:i", "j M Y H:i", "N jS"]
)
def test_it_writes_what_the_date_filter_writes(language, zone, format):
    ours = Template("{% load crm_workspace %}{{ moment|time_tag:format }}")
    djangos = Template('<time datetime="{{ moment|date:"c" }}">{{ moment|date:format }}</time>')
    with translation.override(language), timezone.override(zoneinfo.ZoneInfo(zone)):
        for moment in MOMENTS:
            context = Context({"moment": moment, "format": format})
            assert ours.render(context) == djangos.render(context)


def test_nothing_for_no_moment():
    assert Template("{% load crm_workspace %}[{{ none|time_tag }}]").render(Context({})) == "[]"
