"""The Asterisk Manager Interface: see `telephony.calls` for what each module holds."""
