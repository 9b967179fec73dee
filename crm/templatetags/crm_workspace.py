"""Small helpers for the workspace's templates."""

import zoneinfo
from functools import lru_cache

from django import template
from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import dateformat, timezone, translation
from django.utils.dates import MONTHS_3, WEEKDAYS_ABBR
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext

from crm import phones

register = template.Library()


@register.filter
def get_item(mapping, key):
    """`{{ mapping|get_item:key }}`, for dicts keyed by ids."""
    return mapping.get(key, ()) if mapping else ()


@register.filter
def url_with_id(pk, name):
    """`{{ lead.pk|url_with_id:"crm:lead_detail" }}`: `{% url "crm:lead_detail" lead.pk %}`
    for a URL whose one argument is an id, for the cost of a plain variable (in a loop of links
    the tag took 37 µs a link, this 11): the pipeline links each of its hundred cards three
    times."""
    before, after = _around_id(name, get_script_prefix(), get_urlconf())
    return f"{before}{int(pk)}{after}"


_STAND_IN_ID = 9081726354


@lru_cache(maxsize=64)
def _around_id(name, script_prefix, urlconf):
    """`name`'s URL (with this script prefix and URLconf) before and after its id."""
    url = reverse(name, args=[_STAND_IN_ID], urlconf=urlconf)
    before, found, after = url.partition(str(_STAND_IN_ID))
    if not found or str(_STAND_IN_ID) in after:
        raise ValueError(f"{name}'s URL does not hold its id once: {url}")
    return before, after


@register.filter
def phone(e164):
    """`{{ lead.phone|phone }}`: "+7 916 123-45-67"."""
    return phones.readable(e164 or "")


@register.filter
def get_field(form, name):
    """`{{ form|get_field:name }}`: the bound field `name` of `form`."""
    return form[name]


@register.filter
def lead_time(moment, lead):
    """A moment at the lead's and in the viewer's time: "Tue 14 Jan 10:00 at the lead's, 08:00
    yours"; just the viewer's when the lead's time zone is the same."""
    if not moment:
        return ""
    viewer = timezone.localtime(moment)
    name = getattr(lead, "time_zone", "") or settings.TIME_ZONE
    try:
        theirs = moment.astimezone(zoneinfo.ZoneInfo(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        theirs = viewer
    if theirs.utcoffset() == viewer.utcoffset():
        return quick_date(viewer, "D j M H:i")
    return gettext("%(theirs)s at the lead’s, %(yours)s yours") % {
        "theirs": quick_date(theirs, "D j M H:i"),
        "yours": quick_date(viewer, "H:i" if theirs.date() == viewer.date() else "D j M H:i"),
    }


@register.filter(is_safe=True)
def time_tag(moment, format="D j M H:i"):
    """`{{ moment|time_tag:"D j M Y H:i" }}`: `<time datetime="…">Tue 14 Jan 2025 10:00</time>`
    in the viewer's time zone, as `|date:"c"` and `|date:format` write it. Lists and timelines
    show one on every row, and Django's date filter, at two per row, took half of a page's
    rendering."""
    if not moment:
        return ""
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return format_html(
        '<time datetime="{}">{}</time>', moment.isoformat(), quick_date(moment, format)
    )


_QUICK = {
    "D": lambda moment, names: names[0][moment.weekday()],
    "j": lambda moment, names: str(moment.day),
    "M": lambda moment, names: names[1][moment.month - 1],
    "Y": lambda moment, names: str(moment.year),
    "H": lambda moment, names: f"{moment.hour:02}",
    "i": lambda moment, names: f"{moment.minute:02}",
}


def quick_date(moment, format: str) -> str:
    """`moment` (already in the time zone to show) in Django's date `format`, for the format
    characters above; any other format goes to Django's own formatter."""
    if any(ch.isalpha() and ch not in _QUICK or ch == "\\" for ch in format):
        return dateformat.format(moment, format)
    names = _names(translation.get_language())
    return "".join(_QUICK[ch](moment, names) if ch in _QUICK else ch for ch in format)


@lru_cache(maxsize=16)
def _names(language):
    """The short weekday and month names in `language`, as Django's formats "D" and "M" write
    them."""
    with translation.override(language):
        return (
            [str(WEEKDAYS_ABBR[day]) for day in range(7)],
            [str(MONTHS_3[month]).title() for month in range(1, 13)],
        )


@register.simple_tag(takes_context=True)
def status_options(context, statuses, selected_id):
    """The <option>s of a "Move to" select, `selected_id` chosen: built once per status for a
    whole list of cards (the pipeline shows up to 20 a column, each with every status)."""
    built = context.render_context.setdefault("crm_status_options", {})
    if selected_id not in built:
        built[selected_id] = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (status.code, " selected" if status.pk == selected_id else "", status.name)
                for status in statuses
            ),
        )
    return built[selected_id]
