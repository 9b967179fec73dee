"""Each user's language and time zone, kept in their profile and applied to every page they
open (the workspace's and the admin's).

They are copied into the session when the user signs in (and when they change them), so a page
costs no query to apply them.
"""

import zoneinfo

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_lazy

from crm.models import Profile

TIME_ZONE_REGIONS = {
    "Europe": gettext_lazy("Europe"),
    "Asia": gettext_lazy("Asia"),
    "Africa": gettext_lazy("Africa"),
    "America": gettext_lazy("America"),
    "Atlantic": gettext_lazy("Atlantic"),
    "Australia": gettext_lazy("Australia"),
    "Indian": gettext_lazy("Indian Ocean"),
    "Pacific": gettext_lazy("Pacific"),
}
LANGUAGE_KEY = "crm_language"
TIME_ZONE_KEY = "crm_time_zone"


def remember(request, profile: Profile | None) -> None:
    request.session[LANGUAGE_KEY] = profile.language if profile else ""
    request.session[TIME_ZONE_KEY] = profile.time_zone if profile else ""


@receiver(user_logged_in, dispatch_uid="crm.preferences.on_login")
def apply_on_login(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        remember(request, Profile.objects.filter(user=user).first())


def save_language(request, language: str) -> None:
    """`language` becomes the signed-in user's, in their profile and from this request on."""
    profile, _ = Profile.objects.get_or_create(user=request.user)
    profile.language = language
    profile.save(update_fields=["language"])
    remember(request, profile)


def save_settings(request, profile: Profile) -> None:
    """The user's own settings form was saved: its language and time zone apply from now on."""
    remember(request, profile)
    translation.activate(profile.language or settings.LANGUAGE_CODE)


def time_zone_choices(current: str = "") -> list:
    """The time zones people live in, by region, each with its offset from UTC now ("Moscow
    (UTC+03:00)"); first "the company's", then UTC; `current` is kept among them whatever it is."""
    now = timezone.now()
    regions: dict[str, list] = {region: [] for region in [*TIME_ZONE_REGIONS, ""]}
    for name in sorted(zoneinfo.available_timezones()):
        region, _, place = name.partition("/")
        if region in TIME_ZONE_REGIONS and place or name == current:
            offset = now.astimezone(zoneinfo.ZoneInfo(name)).strftime("%z")
            label = f"{place.replace('_', ' ') or name} (UTC{offset[:3]}:{offset[3:]})"
            regions[region if region in TIME_ZONE_REGIONS else ""].append((name, label))
    company = gettext("The company's: %(zone)s") % {"zone": settings.TIME_ZONE}
    return [("", company), ("UTC", "UTC")] + [
        (str(TIME_ZONE_REGIONS.get(region, gettext("Other"))), zones)
        for region, zones in regions.items()
        if zones
    ]


class PreferencesMiddleware:
    """After the session and locale middleware: the signed-in user's own language and time
    zone, where they have chosen one."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.languages = {code for code, _ in settings.LANGUAGES}

    def __call__(self, request):
        session = getattr(request, "session", None)
        language = session.get(LANGUAGE_KEY, "") if session is not None else ""
        zone = session.get(TIME_ZONE_KEY, "") if session is not None else ""
        if language in self.languages:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        try:
            timezone.activate(zoneinfo.ZoneInfo(zone)) if zone else timezone.deactivate()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        return self.get_response(request)
