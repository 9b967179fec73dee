"""Telephony in the admin: one module per feature."""

from telephony.admin import agents, calls, leads, mail  # noqa: F401
