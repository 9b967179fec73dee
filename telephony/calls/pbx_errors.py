"""What call control can fail with: each PBXError's message says why, for the manager, as it
is; its `status` is the HTTP answer to a script."""

from django.utils.translation import gettext as _

from crm.models import user_display_name


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

    def __init__(self, manager):
        super().__init__(
            _("%(manager)s has no PBX extension: a supervisor sets it in their profile.")
            % {"manager": user_display_name(manager)}
        )


class NoPhoneNumber(PBXError):
    status = 400

    def __init__(self):
        super().__init__(_("The lead has no valid phone number."))


class BadExtension(PBXError):
    status = 400

    def __init__(self, value):
        super().__init__(_("“%(value)s” is not an extension.") % {"value": value})


class BadParty(PBXError):
    status = 400

    def __init__(self, value):
        super().__init__(
            _("“%(value)s” is neither an extension nor a phone number.") % {"value": value}
        )


class CallOver(PBXError):
    status = 409

    def __init__(self):
        super().__init__(_("This call is over."))


class NotInState(PBXError):
    """The control does not fit the state the call is in (hold a call on hold...)."""

    status = 409


class NotAColleague(PBXError):
    status = 400

    def __init__(self):
        super().__init__(_("Choose a colleague with a PBX extension."))


class OwnLegNotOnPBX(PBXError):
    status = 409

    def __init__(self):
        super().__init__(_("Your phone is not on this call at the PBX."))


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
