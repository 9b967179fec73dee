"""Phone numbers as people type them, read with phonenumbers and kept in E.164."""

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def parse_phone(raw: str, region: str | None = None) -> phonenumbers.PhoneNumber | None:
    """The number `raw` stands for, or None when it is not a valid phone number."""
    try:
        number = phonenumbers.parse(raw, region or settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def to_e164(raw: str, region: str | None = None) -> str | None:
    number = parse_phone(raw, region)
    if number is None:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone(raw: str) -> str:
    """E.164 for a non-empty `raw`, or a ValidationError that says what was wrong."""
    e164 = to_e164(raw)
    if e164 is None:
        raise ValidationError(
            _("“%(value)s” is not a valid phone number."),
            code="invalid_phone",
            params={"value": raw},
        )
    return e164


def readable(e164: str) -> str:
    """An E.164 number as people write it: "+7 916 123-45-67"; anything else as it is."""
    number = parse_phone(e164) if e164 else None
    if number is None:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
