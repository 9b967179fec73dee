"""Mail while developing: nothing is sent, every email is kept as a file and shown to staff.

With DEBUG on and no mail server configured (crm/settings.py), EMAIL_BACKEND is this module's
`EmailBackend`: Django's file backend, but one `.eml` file per email in EMAIL_FILE_PATH
(var/mail/), so that each can be read back whole. /dev/mail/ lists them, newest first, and shows
one: its headers, its text, and its HTML in a sandboxed frame (no scripts, no remote images).
The pages answer 404 unless DEBUG is on and the user is staff.
"""

import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.core.mail.backends import filebased
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

NAME = re.compile(r"^[0-9TZ]+-[0-9a-f]{12}\.eml$")
PER_PAGE = 50
SHOWN_HEADERS = (
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
)


class EmailBackend(filebased.EmailBackend):
    """Each email is written under a temporary name and renamed into place (so a page never
    reads half of one), named by the time it was written, which sorts them."""

    def open(self):
        return False  # nothing to keep open: every email is a file of its own

    def close(self):
        pass

    def send_messages(self, email_messages):
        written = 0
        for message in email_messages:
            try:
                self._write(message.message().as_bytes())
            except OSError:
                if not self.fail_silently:
                    raise
            else:
                written += 1
        return written

    def _write(self, data: bytes) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}-{uuid.uuid4().hex[:12]}.eml"
        partial = os.path.join(self.file_path, f".{name}.partial")
        with open(partial, "wb") as file:
            file.write(data)
        os.replace(partial, os.path.join(self.file_path, name))


@dataclass(frozen=True)
class SavedEmail:
    name: str
    message: EmailMessage

    def header(self, name: str) -> str:
        return str(self.message.get(name, ""))

    @property
    def subject(self) -> str:
        return self.header("Subject")

    @property
    def sender(self) -> str:
        return self.header("From")

    @property
    def to(self) -> str:
        return self.header("To")

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The headers worth reading, as the email has them."""
        return [(name, self.header(name)) for name in SHOWN_HEADERS if self.message.get(name)]

    @property
    def sent_at(self) -> datetime | None:
        try:
            return parsedate_to_datetime(self.message["Date"])
        except (TypeError, ValueError):
            return None

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""

    @property
    def attachments(self) -> list[str]:
        return [part.get_filename() or "" for part in self.message.iter_attachments()]


def folder() -> Path:
    return Path(settings.EMAIL_FILE_PATH)


def saved_names() -> list[str]:
    """The emails in the folder, newest first."""
    try:
        names = os.listdir(folder())
    except FileNotFoundError:
        return []
    return sorted((name for name in names if NAME.match(name)), reverse=True)


def read(name: str, *, headers_only: bool = False) -> SavedEmail:
    if not NAME.match(name):
        raise FileNotFoundError(name)
    with open(folder() / name, "rb") as file:
        message = BytesParser(policy=policy.default).parse(file, headersonly=headers_only)
    return SavedEmail(name, message)


def _for_staff_while_developing(request) -> None:
    if not (settings.DEBUG and request.user.is_active and request.user.is_staff):
        raise Http404


@require_safe
def mail_list(request):
    _for_staff_while_developing(request)
    page = Paginator(saved_names(), PER_PAGE).get_page(request.GET.get("page"))
    emails = []
    for name in page:
        try:
            emails.append(read(name, headers_only=True))
        except FileNotFoundError:
            continue  # removed since the folder was listed
    context = {
        **admin.site.each_context(request),
        "title": _("Sent mail"),
        "page": page,
        "emails": emails,
        "folder": folder(),
    }
    return render(request, "dev/mail_list.html", context)


@require_safe
def mail_detail(request, name):
    _for_staff_while_developing(request)
    try:
        email = read(name)
    except FileNotFoundError:
        raise Http404 from None
    context = {**admin.site.each_context(request), "title": email.subject, "email": email}
    return render(request, "dev/mail_detail.html", context)


app_name = "dev_mail"
urlpatterns = [
    path("", mail_list, name="list"),
    path("<str:name>/", mail_detail, name="detail"),
]
