"""Turning a message template into the email a lead gets."""

from dataclasses import dataclass
from email.utils import formataddr
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.template import Context, Template
from django.urls import reverse
from django.utils.translation import override

from crm.models import Profile, user_display_name
from nurture.models import MessageTemplate, Sequence

UNSUBSCRIBE_SALT = "nurture.unsubscribe"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    body_text: str
    body_html: str


def one_line(value: str) -> str:
    """Header-safe text: no line breaks or other control characters can sneak into headers."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def lead_language(lead) -> str:
    return lead.language or settings.LANGUAGE_CODE


def template_for(sequence: Sequence, number: int, language: str) -> MessageTemplate | None:
    """The template for message `number` (1-based): templates are used in turn by position;
    the lead's language is preferred, then the site's, then any."""
    templates = list(sequence.templates.all())
    positions = sorted({t.position for t in templates})
    if not positions:
        return None
    position = positions[(number - 1) % len(positions)]
    candidates = [t for t in templates if t.position == position]
    for wanted in (language, settings.LANGUAGE_CODE):
        for candidate in candidates:
            if candidate.language == wanted:
                return candidate
    return candidates[0]


def unsubscribe_token(message_id: int) -> str:
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign(str(message_id))


def message_id_from_token(token: str) -> int | None:
    try:
        return int(signing.Signer(salt=UNSUBSCRIBE_SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None


def unsubscribe_url(message_id: int) -> str:
    return settings.SITE_URL + reverse("nurture:unsubscribe", args=[unsubscribe_token(message_id)])


def profile_of(user) -> Profile | None:
    """The user's profile, if there is one (cached on the user, or loaded with
    select_related("...__profile") by a batch)."""
    if user is None:
        return None
    try:
        return user.profile
    except Profile.DoesNotExist:
        return None


def template_context(lead, manager, *, unsubscribe: str) -> dict:
    """The fixed set of values a template may use; plain strings, never model instances."""
    profile = profile_of(manager)
    return {
        "lead": {
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "name": lead.full_name,
            "title": lead.title,
            "company": lead.company,
        },
        "manager": {
            "name": profile.name if profile else "",
            "signature": profile.signature if profile else "",
            "phone": profile.phone if profile else "",
            "email": manager.email if manager else "",
        },
        "unsubscribe_url": unsubscribe,
    }


@lru_cache(maxsize=256)
def compiled(source: str) -> Template:
    """A template's source compiled once per process: an edited template is new source, so a
    new entry. (Compiled templates are safe to render from several threads at once.)"""
    return Template(source)


def render(template: MessageTemplate, context: dict, language: str) -> RenderedEmail:
    with override(language):
        plain = Context(context, autoescape=False)
        subject = compiled(template.subject).render(plain)
        body_text = compiled(template.body_text).render(plain)
        body_html = (
            compiled(template.body_html).render(Context(context)) if template.body_html else ""
        )
    # Rendered with autoescape off, the text is not HTML-safe: return plain str, not SafeString.
    return RenderedEmail(one_line(subject), f"{body_text}", f"{body_html}")


def sender_address(manager) -> str:
    name = one_line(user_display_name(manager)) if manager else ""
    address = (manager.email if manager else "") or settings.DEFAULT_FROM_EMAIL
    return formataddr((name, address))


def build_email(message, lead, manager, *, unsubscribe: str = "") -> EmailMultiAlternatives:
    """The email for an already rendered `message`, from the manager, with unsubscribe headers
    (`unsubscribe`: the message's unsubscribe URL, if already known)."""
    sender = sender_address(manager)
    url = unsubscribe or unsubscribe_url(message.pk)
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.body_text,
        from_email=sender,
        to=[formataddr((one_line(lead.full_name), message.to_email))],
        reply_to=[sender],
        headers={
            "Message-ID": message.message_id,
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    if message.body_html:
        email.attach_alternative(message.body_html, "text/html")
    # Read by Anymail's ESP backends (ignored by SMTP): ties tracking events back to the row.
    email.metadata = {"outbound_message": str(message.pk)}
    return email
