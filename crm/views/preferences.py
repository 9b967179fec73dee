from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.views import i18n
from django.views.decorators.http import require_POST

from crm import preferences
from crm.forms import MySettingsForm
from crm.models import Profile
from crm.views.access import workspace_page


@require_POST
def set_language(request):
    """Django's language switch (the cookie, the way back), and the language kept in the
    signed-in user's profile; an unknown language is a 400, not ignored."""
    language = request.POST.get("language", "")
    if language not in {code for code, _ in settings.LANGUAGES}:
        return HttpResponseBadRequest(gettext("Unknown language."))
    if request.user.is_authenticated:
        preferences.save_language(request, language)
    return i18n.set_language(request)


def _with_language_cookie(response, language: str):
    """Like Django's own switch, the language in a cookie too, for the sign-in page."""
    if not language:
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
        return response
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )
    return response


@workspace_page
def my_settings(request):
    """The signed-in user's own settings (their profile, never anybody else's)."""
    profile, _ = Profile.objects.get_or_create(user=request.user)
    form = MySettingsForm(request.POST if request.method == "POST" else None, instance=profile)
    if request.method == "POST":
        if not form.is_valid():
            return TemplateResponse(request, "accounts/settings.html", {"form": form}, status=400)
        form.save()
        preferences.save_settings(request, profile)
        messages.success(request, gettext("Your settings are saved."))
        return _with_language_cookie(HttpResponseRedirect(reverse("my_settings")), profile.language)
    return TemplateResponse(request, "accounts/settings.html", {"form": form})
