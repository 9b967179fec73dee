"""How the CRM talks to each kind of PBX for call control: Asterisk over AMI (a short
connection per action), or a cloud PBX's click-to-call HTTP endpoint. Each connector says which
controls it cannot offer and why (`unsupported`), and turns whatever goes wrong into a PBXError
the manager can read."""

import json
import logging
import urllib.error
import urllib.request

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from crm.models import Lead
from telephony.calls.ami.client import AMIClient
from telephony.calls.ami.protocol import (
    AMIActionFailed,
    AMIConnectionLost,
    AMILoginFailed,
    AMIProtocolError,
)
from telephony.calls.ami.tracking import extension_of
from telephony.calls.pbx_errors import (
    CallNotOnPBX,
    NotSupported,
    OwnLegNotOnPBX,
    PBXRefused,
    PBXUnreachable,
)
from telephony.models import Call

logger = logging.getLogger(__name__)

TIMEOUT = 5  # seconds, for connecting to and hearing from the PBX
RING_TIMEOUT_MS = 30_000  # how long the manager's phone rings before the PBX gives up
# The extensions of TELEPHONY_AMI_HOLD_CONTEXT: the other party hears music on hold there, the
# manager's phone waits in silence, until Bridge puts them back together.
HOLD_EXTEN, WAIT_EXTEN = "hold", "wait"


class Control:
    """The call controls, as the screen pop and the connectors name them."""

    HANGUP = "hangup"
    TRANSFER = "transfer"  # blind
    ATTENDED_TRANSFER = "attended_transfer"
    HOLD = "hold"  # and resume
    CONFERENCE = "conference"  # add a third party
    DND = "dnd"  # do-not-disturb on the manager's extension (the away switch)

    ALL = (HANGUP, TRANSFER, ATTENDED_TRANSFER, HOLD, CONFERENCE, DND)


class AMIConnector:
    """Asterisk: Originate, Hangup, BlindTransfer (or Redirect), Atxfer, hold as Redirect to a
    music-on-hold context and Bridge back, a conference as Redirect into a ConfBridge context
    and Originate of the third party, and DBPut/DBDel for DND."""

    can_control = True

    def __init__(
        self,
        *,
        host,
        port,
        username,
        secret,
        context,
        channel_tech,
        hold_context="",
        conference_context="",
    ):
        self.host, self.port = host, port
        self.username, self.secret = username, secret
        self.context, self.channel_tech = context, channel_tech
        self.hold_context, self.conference_context = hold_context, conference_context

    @classmethod
    def from_settings(cls):
        return cls(
            host=settings.TELEPHONY_AMI_HOST,
            port=settings.TELEPHONY_AMI_PORT,
            username=settings.TELEPHONY_AMI_USERNAME,
            secret=settings.TELEPHONY_AMI_SECRET,
            context=settings.TELEPHONY_AMI_CONTEXT,
            channel_tech=settings.TELEPHONY_AMI_CHANNEL_TECH,
            hold_context=settings.TELEPHONY_AMI_HOLD_CONTEXT,
            conference_context=settings.TELEPHONY_AMI_CONFERENCE_CONTEXT,
        )

    def unsupported(self) -> dict[str, str]:
        """The controls this PBX cannot offer, each with the reason."""
        reasons = {}
        if not self.hold_context:
            reasons[Control.HOLD] = _(
                "Hold is off: the PBX has no hold context set up "
                "(TELEPHONY_AMI_HOLD_CONTEXT); ask your administrator."
            )
        if not self.conference_context:
            reasons[Control.CONFERENCE] = _(
                "Conference calls are off: the PBX has no conference context set up "
                "(TELEPHONY_AMI_CONFERENCE_CONTEXT); ask your administrator."
            )
        return reasons

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

    def attended_transfer(self, call: Call, to_extension: str) -> None:
        """The manager's phone calls the colleague while the other party waits; the transfer
        completes when the manager hangs up (Asterisk's atxfer feature)."""

        def transfer(client):
            own, _other = self._legs(client, call, need_other=False)
            client.action(
                "Atxfer",
                [("Channel", own["Channel"]), ("Context", self.context), ("Exten", to_extension)],
            )

        self._run(transfer)

    def hold(self, call: Call) -> None:
        """Both legs leave their bridge together: the other party to music on hold, the
        manager's phone to wait in silence."""
        self._check(Control.HOLD)

        def hold(client):
            own, other = self._legs(client, call)
            client.action(
                "Redirect", _redirect_both(other, own, self.hold_context, HOLD_EXTEN, WAIT_EXTEN)
            )

        self._run(hold)

    def resume(self, call: Call) -> None:
        def resume(client):
            own, other = self._legs(client, call)
            client.action(
                "Bridge",
                [("Channel1", own["Channel"]), ("Channel2", other["Channel"]), ("Tone", "no")],
            )

        self._run(resume)

    def conference(self, call: Call, to: str, room: str) -> None:
        """Both legs into the ConfBridge room `room`, then the third party is rung into it
        (through the outgoing context, so `to` may be an extension or a number)."""
        self._check(Control.CONFERENCE)

        def conference(client):
            own, other = self._legs(client, call)
            client.action(
                "Redirect", _redirect_both(other, own, self.conference_context, room, room)
            )
            client.action(
                "Originate",
                [
                    ("Channel", f"Local/{to}@{self.context}"),
                    ("Context", self.conference_context),
                    ("Exten", room),
                    ("Priority", "1"),
                    ("Timeout", str(RING_TIMEOUT_MS)),
                    ("Async", "true"),
                ],
            )

        self._run(conference)

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

    def _check(self, control: str) -> None:
        reason = self.unsupported().get(control)
        if reason:
            raise NotSupported(reason)

    def _legs(self, client: AMIClient, call: Call, *, need_other=True):
        """The manager's channel of `call` and the other party's (not a Local/ helper)."""
        channels = self._channels_of(client, call)
        own = _channel_with_extension(channels, call.extension)
        if own is None:
            raise OwnLegNotOnPBX()
        other = next(
            (c for c in channels if c is not own and not c.get("Channel", "").startswith("Local/")),
            None,
        )
        if other is None and need_other:
            raise CallNotOnPBX()
        return own, other

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


# What a PBX reached by its webhook and click-to-call only cannot do.
CANNOT_OVER_HTTP = {
    Control.HANGUP: gettext_lazy("This PBX connection cannot hang up calls."),
    Control.TRANSFER: gettext_lazy("This PBX connection cannot transfer calls."),
    Control.ATTENDED_TRANSFER: gettext_lazy("This PBX connection cannot transfer calls."),
    Control.HOLD: gettext_lazy("This PBX connection cannot put calls on hold."),
    Control.CONFERENCE: gettext_lazy("This PBX connection cannot add a third party to a call."),
    Control.DND: gettext_lazy("This PBX connection cannot switch do-not-disturb."),
}


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

    def unsupported(self) -> dict[str, str]:
        return {control: str(reason) for control, reason in CANNOT_OVER_HTTP.items()}

    def hangup(self, call: Call) -> None:
        self._cannot(Control.HANGUP)

    def transfer(self, call: Call, to_extension: str) -> None:
        self._cannot(Control.TRANSFER)

    def attended_transfer(self, call: Call, to_extension: str) -> None:
        self._cannot(Control.ATTENDED_TRANSFER)

    def hold(self, call: Call) -> None:
        self._cannot(Control.HOLD)

    def resume(self, call: Call) -> None:
        self._cannot(Control.HOLD)

    def conference(self, call: Call, to: str, room: str) -> None:
        self._cannot(Control.CONFERENCE)

    def set_dnd(self, extension: str, on: bool) -> None:
        self._cannot(Control.DND)

    def _cannot(self, control: str):
        raise NotSupported(str(CANNOT_OVER_HTTP[control]))


def _caller_id(lead: Lead, number: str) -> str:
    """What the manager's phone shows while it rings: the lead's name and number."""
    name = " ".join(lead.display_name.split())
    name = name.replace('"', "'")[:60]
    return f'"{name}" <{number}>' if name else number


def _redirect_both(other: dict, own: dict, context: str, exten: str, own_exten: str) -> list:
    """Redirect's fields moving both legs at once (moving one alone would end the call)."""
    return [
        ("Channel", other["Channel"]),
        ("Context", context),
        ("Exten", exten),
        ("Priority", "1"),
        ("ExtraChannel", own["Channel"]),
        ("ExtraContext", context),
        ("ExtraExten", own_exten),
        ("ExtraPriority", "1"),
    ]


def _channel_with_extension(channels: list[dict], extension: str) -> dict | None:
    if not extension:
        return None
    return next((c for c in channels if extension_of(c.get("Channel", "")) == extension), None)
