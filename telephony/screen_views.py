"""The screen pop and the manager's own agent state, as JSON for the pages that poll them."""

import json
from functools import wraps

from django.http import JsonResponse
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from telephony import pbx, screen


def login_required_json(view):
    """Like `login_required`, but a script polling the view gets a 403 to stop on, not a
    redirect to the login page."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": gettext("Log in first.")}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


@never_cache
@require_GET
@login_required_json
def screen_pop(request):
    """`{"calls": [card, ...], "agent": state}`: the calls ringing on the user's extension."""
    return JsonResponse(
        {"calls": screen.screen_pop(request.user), "agent": screen.agent_state(request.user)}
    )


@never_cache
@require_http_methods(["GET", "POST"])
@login_required_json
def agent_state(request):
    """GET: the user's agent state. POST `{"away": true|false}` (JSON or a form): set it."""
    if request.method == "POST":
        away = _away(request)
        if away is None:
            return JsonResponse(
                {"error": gettext("Send “away”: true or false.")},
                status=400,
            )
        pbx.set_away(request.user, away)  # the CRM always; the PBX's DND when it can
    return JsonResponse(screen.agent_state(request.user))


def _away(request) -> bool | None:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return None
        away = data.get("away") if isinstance(data, dict) else None
        return away if isinstance(away, bool) else None
    return {"true": True, "1": True, "false": False, "0": False}.get(request.POST.get("away", ""))
