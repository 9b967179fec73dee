"""Click-to-call and call control: thin POST views over `telephony.pbx`.

A form post (the admin's buttons) gets a message and a redirect back; a request that accepts
`application/json` gets JSON.
"""

import json
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from crm.selectors import leads_visible_to
from telephony import pbx


def wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def control_view(view):
    """POST only, logged in (JSON callers get a 403 rather than the login page)."""

    @require_POST
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            if wants_json(request):
                return JsonResponse({"ok": False, "error": gettext("Log in first.")}, status=403)
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


@control_view
def click_to_call(request, lead_id):
    lead = get_object_or_404(leads_visible_to(request.user), pk=lead_id)
    back = _back(request, reverse("admin:crm_lead_change", args=[lead.pk]))
    try:
        call = pbx.click_to_call(request.user, lead)
    except pbx.PBXError as error:
        return _failed(request, error, back)
    message = gettext("Calling %(number)s: pick up your phone when it rings.") % {
        "number": call.to_raw
    }
    return _done(request, message, back, call=call)


@control_view
def hangup(request, call_pk):
    call = get_object_or_404(pbx.controllable_calls(request.user), pk=call_pk)
    back = _back(request, _call_page(call))
    try:
        pbx.hangup(call)
    except pbx.PBXError as error:
        return _failed(request, error, back)
    return _done(request, gettext("The call is being hung up."), back, call=call)


@control_view
def transfer(request, call_pk):
    call = get_object_or_404(pbx.controllable_calls(request.user), pk=call_pk)
    back = _back(request, _call_page(call))
    to = str(_data(request).get("to", ""))
    try:
        pbx.transfer(call, to)
    except pbx.PBXError as error:
        return _failed(request, error, back)
    message = gettext("The call is being transferred to %(extension)s.") % {"extension": to}
    return _done(request, message, back, call=call)


@control_view
def dnd(request):
    """The manager's own do-not-disturb: `on` = 1/0 (a form) or true/false (JSON)."""
    on = _flag(_data(request).get("on"))
    back = _back(request, reverse("admin:index"))
    if on is None:
        return _refused(request, gettext("Say “on”: 1 or 0."), 400, back)
    problem = pbx.set_away(request.user, on)
    message = gettext("Do not disturb is on.") if on else gettext("Do not disturb is off.")
    if problem is not None:
        message = gettext("%(state)s The PBX was not told: %(reason)s") % {
            "state": message,
            "reason": problem.message,
        }
    if wants_json(request):
        return JsonResponse({"ok": True, "away": on, "pbx": problem is None, "message": message})
    messages.add_message(request, messages.WARNING if problem else messages.SUCCESS, message)
    return HttpResponseRedirect(back)


def _done(request, message, back, *, call):
    if wants_json(request):
        return JsonResponse({"ok": True, "message": message, "call": _call_json(call)})
    messages.success(request, message)
    return HttpResponseRedirect(back)


def _failed(request, error: pbx.PBXError, back):
    return _refused(request, error.message, error.status, back)


def _refused(request, message, status, back):
    if wants_json(request):
        return JsonResponse({"ok": False, "error": message}, status=status)
    messages.error(request, message)
    return HttpResponseRedirect(back)


def _call_json(call) -> dict:
    return {
        "id": call.pk,
        "call_id": call.call_id,
        "direction": call.direction,
        "state": call.state,
        "lead": call.lead_id,
        "extension": call.extension,
        "number": call.lead_number,
    }


def _call_page(call) -> str:
    if call.lead_id:
        return reverse("admin:crm_lead_change", args=[call.lead_id])
    return reverse("admin:index")


def _back(request, default: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def _data(request) -> dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}
    return request.POST


def _flag(value) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}.get(
        str(value).lower()
    )
