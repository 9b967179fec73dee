"""The ESPs' webhooks: Anymail's tracking and inbound views at /anymail/<esp>/..., behind a door
of our own (crm/urls.py mounts this module's `urlpatterns` there).

Anymail turns each ESP's posts into events and sends its `tracking` signal (followed by
`nurture.receivers`) and its `inbound` signal (`telephony.mail.receivers`). Left to itself it
answers for every ESP it knows, lets anyone in when no secret is set (it only warns), and answers
500 to a body it cannot read. Here:

- only the ESPs listed in ANYMAIL_WEBHOOK_ESPS answer; any other /anymail/ path is a 404;
- a listed ESP whose posts cannot be authenticated (no ANYMAIL_WEBHOOK_SECRET and no signing key
  of its own, or a setting Anymail needs missing) refuses every request with 403, and
  `telephony.mail.checks` tells the operator what to set;
- authentication comes first: no basic auth 401, a wrong secret or signature 403; nothing of a
  refused request is kept;
- an authenticated body that cannot be read, is the wrong shape, or holds an inbound message
  from nobody answers 400 and is kept once as a RejectedPayload (source
  "anymail:<esp>:<inbound|tracking>"). A database error is still a 500, so the ESP retries.

The ESPs and their paths are Anymail's own (anymail.urls), so the URLs configured at an ESP keep
working; the list is read on each request, like every setting.
"""

import json
import logging
import re
import warnings
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

import requests
from anymail import urls as anymail_urls
from anymail.exceptions import AnymailWarning, AnymailWebhookValidationFailure
from anymail.signals import AnymailInboundEvent, AnymailTrackingEvent, inbound, tracking
from anymail.utils import get_request_basic_auth
from anymail.webhooks.mandrill import MandrillSignatureMixin
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import BadRequest, ImproperlyConfigured, RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpResponse, JsonResponse, RawPostDataException
from django.urls import URLPattern
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from crm.client_ip import client_ip
from telephony.mail.services import reject

logger = logging.getLogger(__name__)

KIND_OF_SIGNAL = {inbound: "inbound", tracking: "tracking"}
KEPT_HEADERS = ["Content-Type", "Content-Length", "User-Agent"]

# Fetching what a post only points to (an inbound message kept at the ESP or in S3) can fail
# for a while: the ESP is asked to come back (503) rather than the post kept as bad.
try:
    from botocore.exceptions import BotoCoreError, ClientError

    UPSTREAM_ERRORS = (requests.RequestException, BotoCoreError, ClientError)
except ImportError:  # boto3 is only needed for Amazon SES's inbound mail
    UPSTREAM_ERRORS = (requests.RequestException,)


@dataclass(frozen=True)
class Endpoint:
    """One of Anymail's webhook URLs."""

    esp: str  # as in the URL and in ANYMAIL_WEBHOOK_ESPS: "postmark", "amazon_ses"
    kind: str  # "inbound", "tracking", or "" for Mandrill's one endpoint for both
    view_class: type
    pattern: URLPattern  # Anymail's own

    @property
    def source(self) -> str:
        return source_of(self.esp, self.kind)

    @property
    def path(self) -> str:
        """Its URL, e.g. /anymail/postmark/inbound/ (Mailgun's inbound_mime/ counts as one)."""
        return "/anymail/" + re.sub(r"\(.*?\)\?|[$^]", "", str(self.pattern.pattern))

    def is_mounted(self) -> bool:
        return self.esp in settings.ANYMAIL_WEBHOOK_ESPS


def source_of(esp: str, kind: str) -> str:
    """Where a rejected payload came from: "anymail:postmark:inbound". `esp` may also be
    Anymail's name for it ("Amazon SES")."""
    slug = esp.lower().replace(" ", "_")
    return f"anymail:{slug}:{kind}" if kind else f"anymail:{slug}"


def _endpoints() -> list[Endpoint]:
    endpoints = []
    for pattern in anymail_urls.urlpatterns:
        view_class = pattern.callback.view_class
        esp = str(pattern.pattern).lstrip("^").split("/", 1)[0]
        kind = KIND_OF_SIGNAL.get(view_class.signal, "")
        endpoints.append(Endpoint(esp, kind, view_class, pattern))
    return endpoints


ENDPOINTS = _endpoints()
KNOWN_ESPS = sorted({endpoint.esp for endpoint in ENDPOINTS})


class NotConfigured(Exception):
    """The endpoint cannot work with the settings it has (Anymail says which one is missing)."""


class Unsecured(NotConfigured):
    """The endpoint has nothing to authenticate requests with."""


def open_webhook(endpoint: Endpoint):
    """Anymail's view for `endpoint`, ready to check a request; NotConfigured saying what is
    missing when it could not tell the ESP's posts from anyone else's."""
    try:
        webhook = endpoint.view_class()
    except Exception as error:  # noqa: BLE001 - building it only reads settings: all are theirs
        raise NotConfigured(str(error)) from error
    if isinstance(webhook, MandrillSignatureMixin) and webhook.webhook_key is None:
        # Anymail only notices the missing key on the first post.
        raise NotConfigured("ANYMAIL_MANDRILL_WEBHOOK_KEY is not set")
    if webhook.warn_if_no_basic_auth and not webhook.basic_auth:
        # What Anymail itself calls insecure: no shared secret, and no signature to check.
        raise Unsecured(
            "ANYMAIL_WEBHOOK_SECRET is not set, and Anymail has no signing key of this ESP's "
            "to check its posts with"
        )
    return webhook


def configuration_problem(endpoint: Endpoint) -> NotConfigured | None:
    """What keeps `endpoint` from working, or None (for the system check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnymailWarning)
        try:
            open_webhook(endpoint)
        except NotConfigured as error:
            return error
    return None


# --- The view -------------------------------------------------------------------------------


def webhook_view(endpoint: Endpoint):
    """The view answering at `endpoint`'s path."""

    @csrf_exempt  # the ESP proves itself with the secret or its signature: it has no session
    @login_not_required
    def view(request, *args, **kwargs):
        if not endpoint.is_mounted():
            raise Http404
        try:
            webhook = open_webhook(endpoint)
        except NotConfigured as error:
            logger.warning("%s: refused, not configured: %s", endpoint.source, error)
            return _answer(403, _("This webhook is not set up: it refuses every request."))
        webhook.setup(request, *args, **kwargs)
        if request.method != "POST":
            return webhook.dispatch(request, *args, **kwargs)  # HEAD (an ESP's URL check), ...
        try:
            return _receive(endpoint, webhook, request)
        except RequestDataTooBig:
            logger.warning("%s: refused a body over DATA_UPLOAD_MAX_MEMORY_SIZE", endpoint.source)
            return _answer(413, _("The body is larger than this server accepts."))

    return view


def _receive(endpoint: Endpoint, webhook, request) -> HttpResponse:
    refusal = _authenticate(endpoint, webhook, request)
    if refusal is not None:
        return refusal
    try:
        events = webhook.parse_events(request)
        _check_shape(events)
    except UPSTREAM_ERRORS as error:
        logger.warning("%s: what the post points to was not fetched: %s", endpoint.source, error)
        return _answer(503, _("The message could not be fetched from the ESP: try again later."))
    except (RequestDataTooBig, DatabaseError):
        raise
    except Exception as error:  # noqa: BLE001 - Anymail's parsers raise anything on a bad body
        return _rejected(endpoint, request, error)
    try:
        for event in events:
            webhook.signal.send(sender=type(webhook), event=event, esp_name=webhook.esp_name)
    except BadRequest as error:  # the receiver kept what it could not handle
        return _answer(400, str(error))
    except DatabaseError:
        raise
    except Exception as error:  # noqa: BLE001 - kept and answered, not retried forever
        logger.exception("%s: an event could not be handled", endpoint.source)
        return _rejected(endpoint, request, error)
    return HttpResponse()


def _authenticate(endpoint: Endpoint, webhook, request) -> HttpResponse | None:
    """None when the request is the ESP's; else the answer refusing it (nothing is kept)."""
    if webhook.basic_auth:
        given = get_request_basic_auth(request)
        if given is None:
            response = _refused(endpoint, request, 401, "no basic auth")
            # Amazon SNS, for one, sends the credentials only when asked for them.
            response["WWW-Authenticate"] = 'Basic realm="Anymail WEBHOOK_SECRET"'
            return response
        if not any(constant_time_compare(given, allowed) for allowed in webhook.basic_auth):
            return _refused(endpoint, request, 403, "wrong basic auth")
    try:
        webhook.run_validators(request)  # the ESP's signature, where it signs its posts
    except AnymailWebhookValidationFailure as error:
        return _refused(endpoint, request, 403, str(error))
    except RequestDataTooBig:
        raise
    except ImproperlyConfigured as error:  # e.g. the package a signature check needs
        logger.error("%s: refused, not configured: %s", endpoint.source, error)
        return _answer(403, _("This webhook is not set up: it refuses every request."))
    except Exception as error:  # noqa: BLE001 - a check that could not even read the body
        if webhook.basic_auth:  # the shared secret was right: what is wrong is the body
            return _rejected(endpoint, request, error)
        return _refused(endpoint, request, 403, f"{type(error).__name__}: {error}")
    return None


class UnusableEvent(ValueError):
    """Anymail read the body, but what it holds cannot be used."""


def _check_shape(events) -> None:
    """Every event is whole before any of them takes effect."""
    for event in events:
        if isinstance(event, AnymailInboundEvent):
            if not isinstance(event.message, Message) or not _has_sender(event.message):
                raise UnusableEvent(_("an inbound message with no sender (no From address)"))
        elif isinstance(event, AnymailTrackingEvent):
            if not isinstance(event.event_type, str):
                raise UnusableEvent(_("a tracking event without an event type"))
            if not isinstance(event.recipient, str | None):
                raise UnusableEvent(_("a tracking event whose recipient is not an address"))
            if not isinstance(event.message_id, str | int | None):
                raise UnusableEvent(_("a tracking event whose message id is not text"))
            if not isinstance(event.metadata, dict | None):
                raise UnusableEvent(_("a tracking event whose metadata is not an object"))
        else:
            raise UnusableEvent(_("not an event Anymail knows"))


def _has_sender(message: Message) -> bool:
    return any("@" in address for _name, address in getaddresses([str(message["From"] or "")]))


# --- Answers --------------------------------------------------------------------------------


def _answer(status: int, error: str) -> JsonResponse:
    return JsonResponse({"error": error}, status=status)


def _refused(endpoint: Endpoint, request, status: int, reason: str) -> JsonResponse:
    logger.warning(
        "%s: refused (%s) from %s: %s", endpoint.source, status, client_ip(request), reason
    )
    if status == 401:
        return _answer(401, _("Authentication is required: the webhook's secret (basic auth)."))
    return _answer(403, _("The webhook's secret or signature is wrong."))


def _rejected(endpoint: Endpoint, request, error: Exception) -> JsonResponse:
    """Keep an authenticated post that could not be used (once: the ESP's retries of the same
    body only count) and answer 400."""
    reason = str(error) if isinstance(error, UnusableEvent) else f"{type(error).__name__}: {error}"
    logger.warning("%s: payload rejected: %s", endpoint.source, reason)
    headers = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
    headers["Remote-Addr"] = client_ip(request)
    reject(endpoint.source, reason, _payload_text(request), headers)
    return _answer(400, _("The payload could not be used: %(reason)s") % {"reason": reason[:300]})


def _payload_text(request) -> str:
    try:
        return request.body.decode("utf-8", "replace")
    except RawPostDataException:  # a form Anymail already read as one: keep its fields
        fields = {name: request.POST.getlist(name) for name in request.POST}
        files = {
            name: [f"{upload.name} ({upload.size} bytes)" for upload in request.FILES.getlist(name)]
            for name in request.FILES
        }
        return json.dumps({"fields": fields, "files": files}, ensure_ascii=False, indent=1)


app_name = "anymail"
urlpatterns = [
    URLPattern(endpoint.pattern.pattern, webhook_view(endpoint), name=endpoint.pattern.name)
    for endpoint in ENDPOINTS
]
