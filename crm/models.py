import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from crm.phones import normalize_phone


def name_in_language(name_ru: str, name_en: str) -> str:
    """A status's name in the active language, falling back to the other one."""
    if (get_language() or "").startswith("ru"):
        return name_ru or name_en
    return name_en or name_ru


class LeadStatus(models.Model):
    # The statuses the CRM itself uses (created by migration 0002); the rest are the company's.
    NEW = "new"
    IN_PROGRESS = "in_progress"
    NURTURING = "nurturing"

    class Kind(models.TextChoices):
        OPEN = "open", _("Open")
        NURTURING = "nurturing", _("Nurturing")
        WON = "won", _("Won")
        LOST = "lost", _("Lost")

    code = models.SlugField(_("code"), max_length=50, unique=True)
    name_ru = models.CharField(_("name (Russian)"), max_length=100)
    name_en = models.CharField(_("name (English)"), max_length=100)
    order = models.PositiveIntegerField(_("order"), default=0)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.OPEN)

    class Meta:
        ordering = ["order", "id"]
        verbose_name = _("lead status")
        verbose_name_plural = _("lead statuses")

    def __str__(self):
        return self.name

    @property
    def name(self) -> str:
        """The name in the active language, falling back to the other one."""
        return name_in_language(self.name_ru, self.name_en)


class Lead(models.Model):
    class EmailStatus(models.TextChoices):
        OK = "", _("fine")
        UNSUBSCRIBED = "unsubscribed", _("unsubscribed")
        BOUNCED = "bounced", _("bounced")
        COMPLAINED = "complained", _("complained of spam")

    title = models.CharField(_("project title"), max_length=200)
    first_name = models.CharField(_("first name"), max_length=100, blank=True)
    last_name = models.CharField(_("last name"), max_length=100, blank=True)
    email = models.EmailField(_("email"), max_length=254, blank=True)
    phone = models.CharField(_("phone (E.164)"), max_length=20, blank=True, editable=False)
    phone_raw = models.CharField(
        _("phone"), max_length=50, blank=True, help_text=_("As typed; any common format.")
    )
    company = models.CharField(_("company"), max_length=200, blank=True)
    source = models.CharField(_("source"), max_length=100, blank=True)
    status = models.ForeignKey(
        LeadStatus,
        on_delete=models.PROTECT,
        related_name="leads",
        verbose_name=_("status"),
        db_index=False,  # lead_status_waiting_idx serves lookups by status
    )
    responsible = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="leads",
        verbose_name=_("responsible"),
        db_index=False,  # the indexes beginning with responsible serve lookups by it
    )
    status_changed_at = models.DateTimeField(_("status changed at"), default=timezone.now)
    do_not_email = models.BooleanField(_("do not email"), default=False)
    email_status = models.CharField(
        _("email status"), max_length=20, choices=EmailStatus.choices, blank=True
    )
    language = models.CharField(
        _("language"),
        max_length=10,
        choices=settings.LANGUAGES,
        blank=True,
        help_text=_("Language of emails to this lead; empty means the site's default."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        help_text=_("The lead's time zone, e.g. Asia/Yekaterinburg; empty means the company's."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    # When the newest timeline entry happened (its creation, before any): written with the
    # entries (crm.services.record_activity, add_activities), never by a save of the lead.
    last_activity_at = models.DateTimeField(
        _("last activity"), default=timezone.now, editable=False
    )
    # Name, email, title and company, normalised (lead_search_text) for crm.selectors.
    # search_leads: SQLite's LIKE folds the case of ASCII letters only. On PostgreSQL a
    # trigram index serves it (migration 0007).
    search_text = models.TextField(editable=False, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("lead")
        verbose_name_plural = _("leads")
        permissions = [("view_all_leads", _("Can see and edit every lead, not only own"))]
        # The lists' orders, for everybody (a supervisor) and per manager (the visibility
        # rule): newest first, by last activity, by status.
        indexes = [
            models.Index(fields=["email"]),
            models.Index(fields=["phone"]),
            models.Index(fields=["title"]),
            models.Index(fields=["-created_at", "-id"], name="lead_newest_idx"),
            models.Index(
                fields=["responsible", "-created_at", "-id"], name="lead_manager_newest_idx"
            ),
            models.Index(fields=["-last_activity_at", "-id"], name="lead_last_activity_idx"),
            models.Index(
                fields=["responsible", "-last_activity_at", "-id"],
                name="lead_manager_activity_idx",
            ),
            # A status's leads, those waiting longest first (the pipeline's columns).
            models.Index(
                fields=["status", "status_changed_at", "id"], name="lead_status_waiting_idx"
            ),
            models.Index(
                fields=["responsible", "status", "status_changed_at", "id"],
                name="lead_manager_status_idx",
            ),
        ]

    def __str__(self):
        return f"{self.display_name} — {self.title}"

    def save(self, *args, update_fields=None, **kwargs):
        # Saving without full_clean() must not store a half-valid lead either.
        self.full_clean(exclude=["status", "responsible"], validate_unique=False)
        self.search_text = lead_search_text(
            self.first_name, self.last_name, self.email, self.title, self.company
        )
        if update_fields is not None and SEARCHED_FIELDS.intersection(update_fields):
            update_fields = {*update_fields, "search_text"}
        elif update_fields is None and not self._state.adding and not kwargs.get("force_insert"):
            # A lead read a moment ago must not put back an older last activity.
            skipped = {"last_activity_at", *self.get_deferred_fields()}
            update_fields = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.attname not in skipped
            ]
        super().save(*args, update_fields=update_fields, **kwargs)

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def display_name(self) -> str:
        """How the lead is named wherever a person reads about it: the name, else the email,
        the phone, the project title."""
        return self.full_name or self.email or self.phone or self.title

    def clean_fields(self, exclude=None):
        self.email = self.email.strip().lower()
        self.phone_raw = self.phone_raw.strip()
        super().clean_fields(exclude)

    def clean(self):
        super().clean()
        try:
            self.phone = normalize_phone(self.phone_raw) if self.phone_raw else ""
        except ValidationError as error:
            raise ValidationError({"phone_raw": error}) from error
        if self.time_zone and not _is_time_zone(self.time_zone):
            raise ValidationError(
                {"time_zone": _("Unknown time zone “%(name)s”.") % {"name": self.time_zone}}
            )


SEARCHED_FIELDS = {"first_name", "last_name", "email", "title", "company"}


def choice_label(choices: type[models.TextChoices], value: str) -> str:
    """`value`'s label among `choices`, as `get_FOO_display()` gives it, at a ninth of its cost
    (it builds a dict of every choice on each call, 70 µs, and a lead card's timeline asks it of
    every note)."""
    try:
        return choices(value).label
    except ValueError:
        return value


def lead_manager_field() -> models.ForeignKey:
    """The lead's responsible manager, copied onto a row of the lead's (a call, an email) so that
    a manager's list of them reads one index of their own rows, not every lead's. It follows
    the lead: `crm.signals.lead_reassigned` moves it."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        editable=False,
        related_name="+",
        db_index=False,  # the models' own indexes start with it
        verbose_name=_("lead's manager"),
    )


def normalize_search(text: str) -> str:
    """`text` as the search compares it: case folded, «ё» as «е», single spaces."""
    return " ".join(text.casefold().replace("ё", "е").split())


def lead_search_text(first_name, last_name, email, title, company) -> str:
    """What Lead.search_text holds for these values (bulk writers that skip Lead.save call
    this themselves)."""
    return normalize_search(" ".join((first_name, last_name, email, title, company)))


def _is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


class Profile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    display_name = models.CharField(_("display name"), max_length=150, blank=True)
    signature = models.TextField(_("email signature"), blank=True)
    phone = models.CharField(_("phone"), max_length=50, blank=True)
    extension = models.CharField(_("PBX extension"), max_length=20, blank=True)
    language = models.CharField(
        _("language"),
        max_length=10,
        choices=settings.LANGUAGES,
        blank=True,
        help_text=_("The workspace's language for this user; empty means the site's default."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        help_text=_("Times are shown to this user in it; empty means the company's."),
    )

    class Meta:
        verbose_name = _("profile")
        verbose_name_plural = _("profiles")
        constraints = [
            models.UniqueConstraint(
                fields=["extension"],
                condition=~models.Q(extension=""),
                name="unique_pbx_extension",
                violation_error_message=_("This PBX extension belongs to another user."),
            )
        ]

    def __str__(self):
        return self.name

    @property
    def name(self) -> str:
        return self.display_name or self.user.get_full_name() or self.user.get_username()

    def clean(self):
        super().clean()
        if self.time_zone and not _is_time_zone(self.time_zone):
            raise ValidationError(
                {"time_zone": _("Unknown time zone “%(name)s”.") % {"name": self.time_zone}}
            )


def user_display_name(user) -> str:
    """How a user is named everywhere in the CRM: their profile's display name, else their full
    name, else their username."""
    try:
        return user.profile.name
    except Profile.DoesNotExist:
        return user.get_full_name() or user.get_username()


def display_name_or_dash(user) -> str:
    """A user as a page names them, or the admin's "-" for nobody (on a change form Django's
    admin would show a None as "None")."""
    return user_display_name(user) if user is not None else "-"


class StatusChangeCause(models.TextChoices):
    """What made a lead's status change, apart from anybody's free-text reason."""

    PERSON = "person", _("changed by a person")
    REPLY = "reply", _("the lead wrote back")
    CALL = "call", _("the lead called")


class Activity(models.Model):
    class Kind(models.TextChoices):
        CREATED = "created", _("Lead created")
        STATUS_CHANGE = "status_change", _("Status change")
        EMAIL_OUT = "email_out", _("Email sent")
        EMAIL_IN = "email_in", _("Email received")
        CALL = "call", _("Call")
        NOTE = "note", _("Note")
        REASSIGNED = "reassigned", _("Reassigned")
        TASK = "task", _("Task")

    lead = models.ForeignKey(
        Lead,
        on_delete=models.CASCADE,
        related_name="activities",
        verbose_name=_("lead"),
        db_index=False,  # the (lead, -created_at) index serves lookups by lead
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
    )
    summary = models.CharField(_("summary"), max_length=500)
    payload = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("activity")
        verbose_name_plural = _("activities")
        indexes = [
            models.Index(fields=["lead", "-created_at"]),
            # Today's "a reply or a call stopped nurturing": recent status changes only.
            models.Index(
                fields=["-created_at"],
                condition=models.Q(kind="status_change"),
                name="activity_status_change_idx",
            ),
        ]

    def __str__(self):
        return self.description

    @property
    def kind_label(self) -> str:
        return choice_label(self.Kind, self.kind)

    @property
    def description(self) -> str:
        """The entry in the reader's language: summaries are stored as untranslated messages.

        A status change names its statuses: annotated on the row by
        `crm.selectors.with_status_names` (lists of entries), else looked up.
        """
        if self.kind == self.Kind.STATUS_CHANGE:
            old, new = self.payload.get("from"), self.payload.get("to")
            if hasattr(self, "from_status_ru"):
                names = {
                    old: name_in_language(self.from_status_ru, self.from_status_en),
                    new: name_in_language(self.to_status_ru, self.to_status_en),
                }
            else:
                names = {status.code: status.name for status in LeadStatus.objects.all()}
            return gettext("Status: %(old)s → %(new)s") % {
                "old": names.get(old) or old,
                "new": names.get(new) or new,
            }
        return gettext(self.summary)


class Notification(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
        db_index=False,  # the (user, is_read, -created_at) index serves lookups by user
        verbose_name=_("user"),
    )
    lead = models.ForeignKey(
        Lead,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notifications",
        verbose_name=_("lead"),
    )
    message = models.CharField(_("message"), max_length=500)  # in the site's language
    # The message untranslated, with its values: shown in the reader's language.
    message_id = models.CharField(max_length=500, blank=True, editable=False)
    params = models.JSONField(default=dict, blank=True, editable=False)
    is_read = models.BooleanField(_("read"), default=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        indexes = [models.Index(fields=["user", "is_read", "-created_at"])]

    def __str__(self):
        return self.text

    @property
    def text(self) -> str:
        """The message in the reader's (the active) language."""
        if not self.message_id:
            return self.message
        try:
            text = (
                gettext(self.message_id) % self.params if self.params else gettext(self.message_id)
            )
        except (KeyError, TypeError, ValueError):
            return self.message
        return Truncator(text).chars(self._meta.get_field("message").max_length)


class Task(models.Model):
    """A next step on a lead: something to do by a date and time, assigned to someone."""

    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, related_name="tasks", verbose_name=_("lead")
    )
    title = models.CharField(_("what to do"), max_length=200)
    due_at = models.DateTimeField(_("due"))
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="tasks",
        verbose_name=_("assigned to"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    done_at = models.DateTimeField(_("done at"), null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("done by"),
    )

    class Meta:
        ordering = ["due_at", "pk"]
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        indexes = [
            models.Index(
                fields=["assigned_to", "due_at"],
                condition=models.Q(done_at__isnull=True),
                name="task_open_by_assignee",
            ),
            models.Index(
                fields=["lead", "due_at"],
                condition=models.Q(done_at__isnull=True),
                name="task_open_by_lead",
            ),
        ]

    def __str__(self):
        return self.title
