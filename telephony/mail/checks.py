"""System checks for the ESP webhooks (`manage.py check`, and before `migrate` and `runserver`).

A listed ESP whose webhook cannot authenticate anything refuses every post, so the ESP's replies
and bounces never arrive: an Error with DEBUG off (a deployment stops there), a Warning while
developing.
"""

from django.conf import settings
from django.core import checks

from telephony.mail import esp_webhooks

SETTING_HINT = "Set what is named above: see Anymail's documentation for the ESP."
SECURING_HINT = (
    "Set ANYMAIL_WEBHOOK_SECRET to a random user:password and put it in the webhook URL at the "
    "ESP (https://user:password@your-crm/anymail/{esp}/...); an ESP that signs its posts can "
    "use its signing key instead (Anymail's documentation for the ESP, 'Securing webhooks')."
)


def esp_webhooks_are_secured(app_configs, **kwargs) -> list[checks.CheckMessage]:
    messages = []
    known = ", ".join(esp_webhooks.KNOWN_ESPS)
    for esp in settings.ANYMAIL_WEBHOOK_ESPS:
        if esp not in esp_webhooks.KNOWN_ESPS:
            messages.append(
                checks.Error(
                    f"ANYMAIL_WEBHOOK_ESPS names {esp!r}, an ESP Anymail has no webhooks for.",
                    hint=f"Use a name from the webhook URLs: {known}.",
                    id="telephony.E001",
                )
            )
    level, code = (checks.Warning, "W002") if settings.DEBUG else (checks.Error, "E002")
    seen = set()
    for endpoint in esp_webhooks.ENDPOINTS:
        if not endpoint.is_mounted() or endpoint.view_class in seen:
            continue
        seen.add(endpoint.view_class)
        problem = esp_webhooks.configuration_problem(endpoint)
        if problem:
            messages.append(
                level(
                    f"The webhook {endpoint.path} refuses every request: "
                    f"{str(problem).rstrip('.')}.",
                    hint=SECURING_HINT.format(esp=endpoint.esp)
                    if isinstance(problem, esp_webhooks.Unsecured)
                    else SETTING_HINT,
                    id=f"telephony.{code}",
                )
            )
    if settings.ANYMAIL.get("WEBHOOK_SECRET") and not settings.ANYMAIL_WEBHOOK_ESPS:
        messages.append(
            checks.Warning(
                "ANYMAIL_WEBHOOK_SECRET is set, but no ESP's webhooks are mounted: every "
                "/anymail/ URL answers 404.",
                hint="List the ESPs you receive webhooks from, e.g. ANYMAIL_WEBHOOK_ESPS=postmark.",
                id="telephony.W003",
            )
        )
    return messages
