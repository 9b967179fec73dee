"""HMAC signatures of the generic telephony webhook.

The PBX (or the connector in front of it) sends two headers with every request:

    X-Timestamp: 1764000000
    X-Signature: sha256=<hex of HMAC-SHA256(secret, timestamp + "." + raw body)>

Any of the configured secrets is accepted, so a secret can be rotated without downtime: add the
new one, switch the PBX over, remove the old one. The timestamp must be within `max_age` seconds
of our clock, in either direction, so a captured request cannot be replayed later (a replay
inside the window is harmless: its event id was already applied).
"""

import hashlib
import hmac

from django.utils import timezone
from django.utils.translation import gettext as _

TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"
SCHEME = "sha256="


class SignatureError(Exception):
    """Why a request is not accepted as coming from our PBX; `status` is the HTTP answer."""

    status = 403

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class NotConfigured(SignatureError):
    status = 503


class MissingSignature(SignatureError):
    status = 401


class BadSignature(SignatureError):
    status = 403


class StaleTimestamp(SignatureError):
    status = 403


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The X-Signature value for `body` sent at `timestamp` (unix seconds)."""
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return SCHEME + digest


def verify(
    body: bytes, timestamp: str, signature: str, *, secrets: list[str], max_age: int
) -> None:
    """Raise a SignatureError unless `signature` signs `body` at a recent `timestamp` with one
    of `secrets`."""
    secrets = [secret for secret in secrets if secret]
    if not secrets:
        raise NotConfigured(
            _("The webhook has no shared secret configured (TELEPHONY_WEBHOOK_SECRETS).")
        )
    if not timestamp or not signature:
        raise MissingSignature(
            _("The %(timestamp)s and %(signature)s headers are required.")
            % {"timestamp": TIMESTAMP_HEADER, "signature": SIGNATURE_HEADER}
        )
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise BadSignature(
            _("%(header)s must be unix time in seconds.") % {"header": TIMESTAMP_HEADER}
        )
    given = signature.strip().encode("ascii", errors="replace")
    if not any(
        hmac.compare_digest(sign(secret, timestamp, body).encode(), given) for secret in secrets
    ):
        raise BadSignature(_("The signature does not match."))
    if abs(timezone.now().timestamp() - int(timestamp)) > max_age:
        raise StaleTimestamp(
            _("The timestamp is more than %(seconds)d seconds away from our clock.")
            % {"seconds": max_age}
        )
