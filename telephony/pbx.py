"""Call control from the CRM: click-to-call, hang up, transfer and do-not-disturb.

The connector is chosen by settings: Asterisk AMI when TELEPHONY_AMI_HOST is set (a short
connection per action), else an HTTP endpoint when TELEPHONY_CLICK_TO_CALL_URL is set (cloud
PBXs: click-to-call only), else none. Whatever cannot be done raises a PBXError whose message
can be shown to the manager as it is.
"""

import json
import logging
import re
import urllib.error
import urllib.request
import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.models import Lead
from crm.phones import to_e164
from crm.selectors import can_see_all_leads
from telephony import agents
from telephony.ami import (
    CRM_CALL_PREFIX,
    AMIActionFailed,
    AMIConnectionLost,
    AMILoginFailed,
    AMIProtocolError,
)
from telephony.ami_client import AMIClient
from telephony.ami_events import extension_of
from telephony.calls import CallEventData, apply_event
from telephony.models import Call

logger = logging.getLogger(__name__)

SOURCE = "crm"
TIMEOUT = 5  # seconds, for connecting to and hearing from the PBX
RING_TIMEOUT_MS = 30_000  # how long the manager's phone rings before the PBX gives up
DIALLABLE_RE = re.compile(r"[0-9*#]{1,20}")


class PBXError(Exception):
    """Call control that could not be done; the message says why, for the manager."""

    status = 502  # for JSON answers

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class NoPBXConfigured(PBXError):
    status = 503

    def __init__(self):
        super().__init__(_("No PBX is configured: click-to-call and call control are off."))


class NotSupported(PBXError):
    status = 501


class NoExtension(PBXError):
    status = 400

    def __init__(self, user):
        super().__init__(
            _("%(manager)s has no PBX extension: set one in their profile.")
            % {"manager": user.get_full_name() or user.get_username()}
        )


class NoPhoneNumber(PBXError):
    status = 400

    def __init__(self):
        super().__init__(_("The lead has no valid phone number."))


class BadExtension(PBXError):
    status = 400

    def __init__(self, value):
        super().__init__(_("“%(value)s” is not an extension.") % {"value": value})


class CallOver(PBXError):
    status = 409

    def __init__(self):
        super().__init__(_("This call is over."))


class CallNotOnPBX(PBXError):
    status = 409

    def __init__(self):
        super().__init__(_("The PBX has no such call any more."))


class PBXRefused(PBXError):
    def __init__(self, reason):
        super().__init__(_("The PBX refused: %(reason)s") % {"reason": reason})


class PBXUnreachable(PBXError):
    status = 504

    def __init__(self, reason):
        super().__init__(_("The PBX cannot be reached: %(reason)s") % {"reason": reason})


# --- Connectors ----------------------------------------------------------------------------


class AMIConnector:
    """Asterisk: Originate, Hangup, BlindTransfer (or Redirect) and DBPut/DBDel for DND."""

    can_control = True

    def __init__(self, *, host, port, username, secret, context, channel_tech):
        self.host, self.port = host, port
        self.username, self.secret = username, secret
        self.context, self.channel_tech = context, channel_tech

    @classmethod
    def from_settings(cls):
        return cls(
            host=settings.TELEPHONY_AMI_HOST,
            port=settings.TELEPHONY_AMI_PORT,
            username=settings.TELEPHONY_AMI_USERNAME,
            secret=settings.TELEPHONY_AMI_SECRET,
            context=settings.TELEPHONY_AMI_CONTEXT,
            channel_tech=settings.TELEPHONY_AMI_CHANNEL_TECH,
        )

    def originate(self, *, extension: str, number: str, lead: Lead, call_id: str) -> None:
        """Ring the manager's phone; when they pick up, the PBX dials the lead. The channel id
        makes our call id the call's Linkedid, so `ami_listen` follows it on the same row."""
        self._run(
            lambda client: client.action(
                "Originate",
                [
                    ("Channel", f"{self.channel_tech}/{extension}"),
                    ("Context", self.context),
                    ("Exten", number),
                    ("Priority", "1"),
                    ("CallerID", _caller_id(lead, number)),
                    ("Timeout", str(RING_TIMEOUT_MS)),
                    ("Async", "true"),
                    ("ChannelId", call_id),
                    ("Variable", f"CRM_LEAD_ID={lead.pk}"),
                    ("Variable", f"CRM_CALL_ID={call_id}"),
                ],
            )
        )

    def hangup(self, call: Call) -> None:
        def hang_up(client):
            channels = self._channels_of(client, call)
            channel = _channel_with_extension(channels, call.extension) or next(
                (c for c in channels if c.get("Uniqueid") == c.get("Linkedid")), channels[0]
            )
            client.action("Hangup", [("Channel", channel["Channel"]), ("Cause", "16")])

        self._run(hang_up)

    def transfer(self, call: Call, to_extension: str) -> None:
        """The manager's leg transfers blindly; with no leg of the manager's to be found, the
        other party's channel is redirected instead."""

        def transfer(client):
            channels = self._channels_of(client, call)
            own = _channel_with_extension(channels, call.extension)
            if own:
                client.action(
                    "BlindTransfer",
                    [
                        ("Channel", own["Channel"]),
                        ("Context", self.context),
                        ("Exten", to_extension),
                    ],
                )
                return
            other = next((c for c in channels if not extension_of(c.get("Channel", ""))), None)
            if other is None:
                raise CallNotOnPBX()
            client.action(
                "Redirect",
                [
                    ("Channel", other["Channel"]),
                    ("Context", self.context),
                    ("Exten", to_extension),
                    ("Priority", "1"),
                ],
            )

        self._run(transfer)

    def set_dnd(self, extension: str, on: bool) -> None:
        def switch(client):
            if on:
                client.action("DBPut", [("Family", "DND"), ("Key", extension), ("Val", "YES")])
                return
            try:
                client.action("DBDel", [("Family", "DND"), ("Key", extension)])
            except AMIActionFailed as error:
                if "not found" not in str(error).lower():  # already off is off
                    raise

        self._run(switch)

    def _channels_of(self, client: AMIClient, call: Call) -> list[dict]:
        channels = [
            channel
            for channel in client.list_action(
                "CoreShowChannels", complete="CoreShowChannelsComplete"
            )
            if channel.get("Linkedid") == call.call_id
        ]
        if not channels:
            raise CallNotOnPBX()
        return channels

    def _run(self, work):
        try:
            with AMIClient(
                self.host, self.port, self.username, self.secret, timeout=TIMEOUT
            ) as client:
                return work(client)
        except AMILoginFailed as error:
            logger.warning("AMI login to %s:%s refused: %s", self.host, self.port, error)
            raise PBXRefused(_("the CRM's AMI login was not accepted")) from error
        except AMIActionFailed as error:
            raise PBXRefused(str(error)) from error
        except TimeoutError as error:
            raise PBXUnreachable(_("no answer in %(seconds)s s") % {"seconds": TIMEOUT}) from error
        except ConnectionRefusedError as error:
            raise PBXUnreachable(_("the connection was refused")) from error
        except AMIConnectionLost as error:
            raise PBXUnreachable(_("it closed the connection")) from error
        except AMIProtocolError as error:
            logger.warning("AMI %s:%s: %s", self.host, self.port, error)
            raise PBXUnreachable(_("it does not speak the Asterisk manager protocol")) from error
        except OSError as error:
            raise PBXUnreachable(error.strerror or str(error)) from error


class HTTPConnector:
    """A cloud PBX's click-to-call endpoint: POST {"extension", "number", "lead_id",
    "call_id"} as JSON, with the token as a bearer token. It places calls, nothing more."""

    can_control = False

    def __init__(self, *, url, token):
        self.url, self.token = url, token

    @classmethod
    def from_settings(cls):
        return cls(
            url=settings.TELEPHONY_CLICK_TO_CALL_URL, token=settings.TELEPHONY_CLICK_TO_CALL_TOKEN
        )

    def originate(self, *, extension: str, number: str, lead: Lead, call_id: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise PBXUnreachable(_("the click-to-call address is not an http(s) URL"))
        body = {"extension": extension, "number": number, "lead_id": lead.pk, "call_id": call_id}
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            self.url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as error:
            raise PBXRefused(
                _("HTTP %(status)d from the click-to-call address") % {"status": error.code}
            ) from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise PBXUnreachable(str(reason)) from error

    def hangup(self, call: Call) -> None:
        raise NotSupported(_("This PBX connection cannot hang up calls."))

    def transfer(self, call: Call, to_extension: str) -> None:
        raise NotSupported(_("This PBX connection cannot transfer calls."))

    def set_dnd(self, extension: str, on: bool) -> None:
        raise NotSupported(_("This PBX connection cannot switch do-not-disturb."))


def connector():
    """The configured connector; NoPBXConfigured when there is none."""
    if settings.TELEPHONY_AMI_HOST:
        return AMIConnector.from_settings()
    if settings.TELEPHONY_CLICK_TO_CALL_URL:
        return HTTPConnector.from_settings()
    raise NoPBXConfigured()


def is_configured() -> bool:
    return bool(settings.TELEPHONY_AMI_HOST or settings.TELEPHONY_CLICK_TO_CALL_URL)


def can_control_calls() -> bool:
    return bool(settings.TELEPHONY_AMI_HOST)


# --- Operations ----------------------------------------------------------------------------


def click_to_call(manager, lead: Lead) -> Call:
    """Ring `manager`'s phone, then the lead. The call is logged as outbound at once (on the
    lead's timeline); if the PBX refuses, that call is ended with the reason and the error
    raised."""
    connection = connector()
    extension = extension_for(manager)
    number = to_e164(lead.phone) if lead.phone else None
    if not number:
        raise NoPhoneNumber()
    call = log_outbound_call(manager, lead, extension, number)
    try:
        connection.originate(extension=extension, number=number, lead=lead, call_id=call.call_id)
    except PBXError as error:
        apply_event(
            SOURCE,
            CallEventData(
                event_id=f"{call.call_id}:not-placed",
                type="call.ended",
                call_id=call.call_id,
                occurred_at=timezone.now(),
                hangup_cause=error.message[:100],
            ),
        )
        raise
    return call


def log_outbound_call(manager, lead: Lead, extension: str, number: str) -> Call:
    """The outbound call the CRM is about to place, ringing, on the lead's timeline."""
    call_id = new_call_id()
    now = timezone.now()
    with transaction.atomic():
        # Created with its lead, so the lead is the one the manager chose even when several
        # leads share the number.
        Call.objects.create(
            source=SOURCE,
            call_id=call_id,
            direction=Call.Direction.OUTBOUND,
            state=Call.State.RINGING,
            started_at=now,
            last_event_at=now,
            lead=lead,
            agent=manager,
            extension=extension,
        )
        call = apply_event(
            SOURCE,
            CallEventData(
                event_id=f"{call_id}:placed",
                type="call.ringing",
                call_id=call_id,
                occurred_at=now,
                direction=Call.Direction.OUTBOUND,
                from_number=extension,
                to_number=number,
                extension=extension,
                raw={"placed_by": manager.pk, "lead": lead.pk},
            ),
        )
    return call


def new_call_id() -> str:
    return f"{CRM_CALL_PREFIX}{uuid.uuid4().hex}"


def hangup(call: Call) -> None:
    if call.is_over:
        raise CallOver()
    connector().hangup(call)


def transfer(call: Call, to_extension: str) -> None:
    to_extension = (to_extension or "").strip()
    if not DIALLABLE_RE.fullmatch(to_extension):
        raise BadExtension(to_extension)
    if call.is_over:
        raise CallOver()
    connector().transfer(call, to_extension)


def set_dnd(manager, on: bool) -> None:
    """Do-not-disturb on the manager's extension at the PBX (AMI: the DND/<extension> key in
    AstDB that the usual dialplans check)."""
    connector().set_dnd(extension_for(manager), on)


def set_away(manager, away: bool) -> PBXError | None:
    """The manager's own away switch: in the CRM always, at the PBX (DND) when it can be.
    Returns why the PBX was not told, if it was not."""
    problem = None
    try:
        set_dnd(manager, away)
    except PBXError as error:
        problem = error
    agents.set_away(manager, away)
    return problem


def extension_for(user) -> str:
    profile = getattr(user, "profile", None)
    extension = (profile.extension if profile else "").strip()
    if not extension:
        raise NoExtension(user)
    return extension


def controllable_calls(user):
    """Calls `user` may hang up or transfer: their own, and those of leads they look after."""
    calls = Call.objects.select_related("lead")
    if can_see_all_leads(user):
        return calls
    return calls.filter(Q(agent=user) | Q(lead__responsible=user))


def _caller_id(lead: Lead, number: str) -> str:
    """What the manager's phone shows while it rings: the lead's name and number."""
    name = " ".join((lead.full_name or lead.title).split())
    name = name.replace('"', "'")[:60]
    return f'"{name}" <{number}>' if name else number


def _channel_with_extension(channels: list[dict], extension: str) -> dict | None:
    if not extension:
        return None
    return next((c for c in channels if extension_of(c.get("Channel", "")) == extension), None)
