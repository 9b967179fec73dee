"""Telephony over HTTP: the PBX's webhook, the screen pop, the manager's agent state and away
switch, click-to-call, and call control (hang up, blind and attended transfer, hold and resume,
conference). Thin views over `telephony.calls`.

A script (it accepts `application/json`, or sends JSON) gets JSON; a form post (the admin's
buttons) gets a message and a redirect back, to a safe `next` if one is given.
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
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from crm.selectors import leads_visible_to
from telephony.calls import pbx, selectors, services, shown, signatures, webhook
from telephony.calls.events import WEBHOOK
from telephony.calls.pbx_errors import PBXError

FORM_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def wants_json(request) -> bool:
    return (
        "application/json" in request.headers.get("Accept", "")
        or request.content_type == "application/json"
    )


def logged_in(view):
    """Like `login_required`, but a script gets a 403 to stop on rather than a redirect to the
    login page."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            if wants_json(request):
                return JsonResponse({"ok": False, "error": gettext("Log in first.")}, status=403)
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


# --- The PBX's webhook ----------------------------------------------------------------------


@csrf_exempt  # the PBX signs its requests; it has no session or CSRF token
@require_POST
def events(request):
    """Receive one call event: verify, parse, apply (see `telephony.calls.webhook`)."""
    try:
        body = webhook.read_body(request)
    except webhook.TooLarge as error:
        return _invalid(error, status=413)
    try:
        webhook.verify(request, body)
    except signatures.SignatureError as error:
        return JsonResponse({"error": str(error.message)}, status=error.status)
    try:
        event = webhook.parse_body(body)
    except webhook.InvalidEvent as error:
        webhook.reject(request, body, str(error))
        return _invalid(error)
    call = services.apply_event(WEBHOOK, event)
    if call is None:
        return JsonResponse({"status": "duplicate"})
    return JsonResponse({"status": "ok", "call": call.pk})


# --- The screen pop and the manager's own state -----------------------------------------------


@never_cache
@require_GET
@logged_in
def screen_pop(request):
    """`{"calls": [card, ...], "colleagues": [...], "agent": state}`: the calls ringing or in
    progress on the user's extension, with their controls during a call."""
    cards = selectors.screen_pop(request.user, unsupported=pbx.unsupported())
    return JsonResponse({**cards, "agent": selectors.agent_state(request.user)})


@never_cache
@require_http_methods(["GET", "POST"])
@logged_in
def agent_state(request):
    """GET: the user's agent state. POST `away` (true or false in JSON; true, false, 1 or 0 in a
    form): set the user away or back, in the CRM and, when it can be, at the PBX. The answer
    says whether the PBX was told, and if not why."""
    if request.method == "GET":
        return JsonResponse(selectors.agent_state(request.user))
    back = _back(request, reverse("admin:index"))
    away = _away(request)
    if away is None:
        return _refused(request, gettext("Send “away”: true or false."), 400, back)
    problem = pbx.set_away(request.user, away)
    message = gettext("You are away.") if away else gettext("You are back.")
    if problem is not None:
        message = gettext("%(state)s The PBX was not told: %(reason)s") % {
            "state": message,
            "reason": problem.message,
        }
    if wants_json(request):
        told = {"pbx": problem is None, "message": message}
        return JsonResponse({**selectors.agent_state(request.user), **told})
    messages.add_message(request, messages.WARNING if problem else messages.SUCCESS, message)
    return HttpResponseRedirect(back)


# --- Call control ---------------------------------------------------------------------------


@require_POST
@logged_in
def click_to_call(request, lead_id):
    lead = get_object_or_404(leads_visible_to(request.user), pk=lead_id)
    back = _back(request, reverse("admin:crm_lead_change", args=[lead.pk]))
    try:
        call = pbx.click_to_call(request.user, lead)
    except PBXError as error:
        return _refused(request, error.message, error.status, back)
    message = gettext("Calling %(number)s: pick up your phone when it rings.") % {
        "number": call.to_raw
    }
    return _done(request, message, back, call=shown.as_shown_to(request.user, call))


def call_control(view):
    """A control of one call: POST only, logged in; a call the user may not see is a 404, one
    they may see but not control a 403; a PBXError is answered with its status and message.
    `view(request, call, data)` does it and returns the message for the manager."""

    @require_POST
    @logged_in
    @wraps(view)
    def wrapper(request, call_pk):
        call = _visible_call(request, call_pk)
        back = _back(request, _call_page(call))
        if not _controls(request.user, call):
            return _refused(request, gettext("You may not control this call."), 403, back)
        try:
            message = view(request, call, _data(request))
        except PBXError as error:
            return _refused(request, error.message, error.status, back)
        return _done(request, message, back, call=call)

    return wrapper


@call_control
def hangup(request, call, data):
    pbx.hangup(call)
    return gettext("The call is being hung up.")


@call_control
def transfer(request, call, data):
    """To a colleague (`colleague`: their user id) or to an extension typed in (`to`)."""
    extension, name = _transfer_target(request, data)
    pbx.transfer(call, extension)
    return _transferring(extension, name)


@call_control
def attended_transfer(request, call, data):
    extension, name = _transfer_target(request, data)
    pbx.attended_transfer(call, extension)
    return gettext(
        "Your phone is calling %(colleague)s: talk to them, then hang up to pass the call on."
    ) % {"colleague": name or extension}


@call_control
def hold(request, call, data):
    pbx.hold(call)
    return gettext("The call is on hold.")


@call_control
def resume(request, call, data):
    pbx.resume(call)
    return gettext("The call is back on.")


@call_control
def conference(request, call, data):
    """Add a colleague (`colleague`) or a number (`to`) to the call."""
    party, name = _transfer_target(request, data)
    pbx.conference(call, party)
    return gettext("Calling %(party)s into the call.") % {"party": name or party}


def _transfer_target(request, data) -> tuple[str, str]:
    """The extension (or number) to pass the call to, and the colleague's name if it is one."""
    if data.get("colleague") not in (None, ""):
        return pbx.colleague_extension(request.user, data.get("colleague"))
    return str(data.get("to", "")), ""


def _transferring(extension: str, name: str) -> str:
    if name:
        return gettext("The call is being transferred to %(colleague)s.") % {"colleague": name}
    return gettext("The call is being transferred to %(extension)s.") % {"extension": extension}


# --- Answers --------------------------------------------------------------------------------


def _done(request, message, back, *, call):
    if wants_json(request):
        return JsonResponse({"ok": True, "message": message, "call": _call_json(call)})
    messages.success(request, message)
    return HttpResponseRedirect(back)


def _refused(request, message, status, back):
    if wants_json(request):
        return JsonResponse({"ok": False, "error": message}, status=status)
    messages.error(request, message)
    return HttpResponseRedirect(back)


def _invalid(error: webhook.InvalidEvent, *, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": str(error), "field": error.field}, status=status)


def _visible_call(request, call_pk):
    """The call if the user may see it (else 404), with what of it they may not: the lead of a
    colleague's call they took, a colleague's extension (`telephony.calls.shown`)."""
    calls = shown.with_hidden_details(request.user, selectors.calls_visible_to(request.user))
    return get_object_or_404(calls, pk=call_pk)


def _controls(user, call) -> bool:
    """A call one may see is not always one one may hang up or transfer: that answers 403."""
    return selectors.controllable_calls(user).filter(pk=call.pk).exists()


def _call_json(call) -> dict:
    return {
        "id": call.pk,
        "call_id": call.call_id,
        "direction": call.direction,
        "state": call.state,
        "lead": None if call.lead_hidden else call.lead_id,
        "extension": "" if call.extension_hidden else call.extension,
        "number": call.lead_number,
    }


def _call_page(call) -> str:
    if call.lead_id and not call.lead_hidden:
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


def _away(request) -> bool | None:
    """`away` as a JSON true or false, or a form's true, false, 1 or 0; None if neither."""
    away = _data(request).get("away")
    if request.content_type == "application/json":
        return away if isinstance(away, bool) else None
    return FORM_FLAGS.get(str(away).lower())
