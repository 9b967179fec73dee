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

from crm.models import Profile

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
