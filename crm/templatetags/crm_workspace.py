"""Small helpers for the workspace's templates."""

import zoneinfo

from django import template
from django.conf import settings
from django.utils import formats, timezone
from django.utils.translation import gettext

from crm import phones

register = template.Library()


@register.filter
def get_item(mapping, key):
    """`{{ mapping|get_item:key }}`, for dicts keyed by ids."""
    return mapping.get(key, ()) if mapping else ()


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
        return formats.date_format(viewer, "D j M H:i")
    return gettext("%(theirs)s at the lead’s, %(yours)s yours") % {
        "theirs": formats.date_format(theirs, "D j M H:i"),
        "yours": formats.date_format(
            viewer, "H:i" if theirs.date() == viewer.date() else "D j M H:i"
        ),
    }
