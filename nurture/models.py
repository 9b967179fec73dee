import hashlib
from datetime import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.models import Lead, LeadStatus, lead_manager_field


class Sequence(models.Model):
    """A follow-up plan: its templates are sent in turn, a number of working days apart."""

    name = models.CharField(_("name"), max_length=200)
    enrolling_status = models.ForeignKey(
        LeadStatus,
        on_delete=models.PROTECT,
        related_name="sequences",
        verbose_name=_("enrolling status"),
        help_text=_("Leads moved to this status are enrolled; leaving it stops the sequence."),
    )
    interval_working_days = models.PositiveSmallIntegerField(
        _("interval in working days"), default=3
    )
    max_messages = models.PositiveSmallIntegerField(_("maximum messages"), default=6)
    window_start = models.TimeField(_("sending window starts"), default=time(10, 0))
    window_end = models.TimeField(_("sending window ends"), default=time(18, 0))
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("sequence")
        verbose_name_plural = _("sequences")

    def __str__(self):
        return self.name

    def clean(self):
        if self.window_start >= self.window_end:
            raise ValidationError(_("The sending window must end after it starts."))
        if self.interval_working_days < 1 or self.max_messages < 1:
            raise ValidationError(_("The interval and the maximum must be at least 1."))


class MessageTemplate(models.Model):
    """One email of a sequence, in one language; templates are used in turn by position."""

    sequence = models.ForeignKey(
        Sequence, on_delete=models.CASCADE, related_name="templates", verbose_name=_("sequence")
    )
    position = models.PositiveSmallIntegerField(_("position"), default=1)
    language = models.CharField(_("language"), max_length=10, choices=settings.LANGUAGES)
    subject = models.CharField(_("subject"), max_length=300)
    body_text = models.TextField(_("plain-text body"))
    body_html = models.TextField(_("HTML body"), blank=True)

    class Meta:
        ordering = ["sequence", "position", "language"]
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        constraints = [
            models.UniqueConstraint(
                fields=["sequence", "position", "language"], name="one_template_per_position"
            )
        ]

    def __str__(self):
        return f"{self.position} ({self.language}): {self.subject}"


class Enrollment(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", _("active")
        COMPLETED = "completed", _("completed")
        HALTED = "halted", _("halted")

    class HaltReason(models.TextChoices):
        STATUS_CHANGE = "status_change", _("status changed")
        REPLY = "reply", _("lead replied")
        CALL = "call", _("lead called")
        BOUNCE = "bounce", _("email bounced")
        COMPLAINT = "complaint", _("spam complaint")
        UNSUBSCRIBE = "unsubscribe", _("lead unsubscribed")
        MANUAL = "manual", _("stopped by hand")

    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, related_name="enrollments", verbose_name=_("lead")
    )
    sequence = models.ForeignKey(
        Sequence, on_delete=models.PROTECT, related_name="enrollments", verbose_name=_("sequence")
    )
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.ACTIVE)
    sent_count = models.PositiveSmallIntegerField(
        _("messages created"), default=0, help_text=_("How many steps have been dispatched.")
    )
    next_send_at = models.DateTimeField(_("next send at"), null=True, blank=True)
    halt_reason = models.CharField(
        _("halt reason"), max_length=20, choices=HaltReason.choices, blank=True
    )
    enrolled_at = models.DateTimeField(_("enrolled at"))
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)

    class Meta:
        ordering = ["-enrolled_at"]
        verbose_name = _("enrollment")
        verbose_name_plural = _("enrollments")
        constraints = [
            models.UniqueConstraint(
                fields=["lead", "sequence"],
                condition=Q(state="active"),
                name="one_active_enrollment_per_lead_and_sequence",
            )
        ]
        indexes = [
            # The dispatcher's "what is due" query reads only this small partial index.
            models.Index(
                fields=["next_send_at"],
                condition=Q(state="active", next_send_at__isnull=False),
                name="enrollment_due_idx",
            ),
            # Today's "all emails sent, never answered": the finished ones of a manager's leads,
            # read from the index alone (with their ids).
            models.Index(
                fields=["lead", "ended_at", "id"],
                condition=Q(state="completed"),
                name="enrollment_completed_idx",
            ),
        ]

    def __str__(self):
        return f"{self.lead} — {self.sequence}"


class OutboundMessage(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENDING = "sending", _("sending")
        RETRY = "retry", _("awaiting retry")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        UNKNOWN = "unknown", _("unknown (lease expired)")
        CANCELLED = "cancelled", _("cancelled")

    # Lookups by enrollment use the unique (enrollment, number) index, by sender the
    # (sender, scheduled_for) one: fewer indexes to keep up on every insert and update.
    enrollment = models.ForeignKey(
        Enrollment,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("enrollment"),
        db_index=False,
    )
    # The enrollment's sequence, copied when the message is made (it never changes), so that
    # "which email works" counts the sent ones per sequence and step from one index.
    sequence = models.ForeignKey(
        Sequence,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("sequence"),
        db_index=False,
    )
    number = models.PositiveSmallIntegerField(_("number"))
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.QUEUED)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=_("sender"),
        db_index=False,
    )
    lead_manager = lead_manager_field()
    scheduled_for = models.DateTimeField(_("scheduled for"))
    to_email = models.EmailField(_("to"), blank=True)
    subject = models.CharField(_("subject"), max_length=300, blank=True)
    body_text = models.TextField(_("plain-text body"), blank=True)
    body_html = models.TextField(_("HTML body"), blank=True)
    message_id = models.CharField(_("Message-ID"), max_length=255, blank=True)
    provider_message_id = models.CharField(_("provider's message id"), max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    retry_at = models.DateTimeField(_("retry at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"))

    class Meta:
        ordering = ["-created_at", "-number"]
        verbose_name = _("outbound message")
        verbose_name_plural = _("outbox")
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "number"], name="one_message_per_enrollment_step"
            )
        ]
        indexes = [
            models.Index(fields=["sender", "scheduled_for"], name="outbound_sender_slot_idx"),
            # Exact matches only (replies' In-Reply-To, ESP events): no LIKE index beside them.
            models.Index(fields=["message_id"], name="outbound_message_id_idx"),
            models.Index(fields=["provider_message_id"], name="outbound_provider_id_idx"),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(state="sending"),
                name="outbound_lease_idx",
            ),
            models.Index(
                fields=["retry_at"], condition=Q(state="retry"), name="outbound_retry_idx"
            ),
            models.Index(
                fields=["created_at"], condition=Q(state="queued"), name="outbound_queued_idx"
            ),
            # The outbox list's order (the admin pages through it newest first).
            models.Index(fields=["-created_at", "-number"], name="outbound_newest_idx"),
            # A manager's outbox: the emails to their leads, in the list's order.
            models.Index(
                fields=["lead_manager", "-created_at", "-number"], name="outbound_lead_manager_idx"
            ),
            # "Which email works" counts the sent emails per step from this index alone.
            models.Index(
                fields=["sequence", "number"], condition=Q(state="sent"), name="outbound_sent_idx"
            ),
        ]

    def __str__(self):
        return f"#{self.number} → {self.to_email or self.enrollment.lead}"

    def save(self, *args, **kwargs):
        if self.sequence_id is None and self.enrollment_id is not None:
            self.sequence_id = self.enrollment.sequence_id
        if self._state.adding and self.lead_manager_id is None and self.enrollment_id is not None:
            self.lead_manager_id = self.enrollment.lead.responsible_id
        super().save(*args, **kwargs)


class CalendarDay(models.Model):
    """A company-specific exception to the country's working-day calendar."""

    class Kind(models.TextChoices):
        DAY_OFF = "day_off", _("day off")
        WORKING_DAY = "working_day", _("working day")

    date = models.DateField(_("date"), unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        ordering = ["date"]
        verbose_name = _("company calendar day")
        verbose_name_plural = _("company calendar")

    def __str__(self):
        return f"{self.date}: {self.get_kind_display()}"


class MailboxLimit(models.Model):
    """How many emails one manager's mailbox may send; sends over a cap wait for a free slot."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="mailbox_limit",
        verbose_name=_("manager"),
    )
    per_minute = models.PositiveIntegerField(_("per minute"), default=10)
    per_day = models.PositiveIntegerField(_("per day"), default=200)

    class Meta:
        verbose_name = _("mailbox limit")
        verbose_name_plural = _("mailbox limits")

    def __str__(self):
        return f"{self.user}: {self.per_minute}/min, {self.per_day}/day"


def normalize_address(address: str) -> str:
    """An email address as the suppression list keys it (and as leads store theirs)."""
    return (address or "").strip().lower()


def address_hash(address: str) -> str:
    """What the suppression list keeps of an erased person's address: SHA-256 of it, normalised."""
    return hashlib.sha256(normalize_address(address).encode()).hexdigest()


class SuppressionQuerySet(models.QuerySet):
    def active(self):
        return self.filter(lifted_at__isnull=True)


class Suppression(models.Model):
    """An address that is not emailed again, whichever lead has it: it unsubscribed, bounced
    for good, or complained. Only a supervisor lifts it, saying why; the row keeps that trail."""

    class Reason(models.TextChoices):
        # The same codes as the halt reasons they stop nurturing with.
        UNSUBSCRIBE = "unsubscribe", _("unsubscribed")
        BOUNCE = "bounce", _("hard bounce")
        COMPLAINT = "complaint", _("spam complaint")

    # None once the person is erased (nurture.erasure): then only address_hash is kept, and a
    # lead given the address again writes it back.
    address = models.EmailField(_("address"), max_length=254, null=True, blank=True)
    address_hash = models.CharField(
        _("address hash (SHA-256)"), max_length=64, blank=True, db_index=True, editable=False
    )
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    created_at = models.DateTimeField(_("suppressed at"), default=timezone.now)
    details = models.JSONField(_("what caused it"), default=dict, blank=True)
    lifted_at = models.DateTimeField(_("lifted at"), null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("lifted by"),
    )
    lift_reason = models.TextField(_("why it was lifted"), blank=True)

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("suppression")
        verbose_name_plural = _("suppression list")
        constraints = [
            # The dispatcher's and the sender's lookups read only this small partial index.
            models.UniqueConstraint(
                fields=["address"],
                condition=Q(lifted_at__isnull=True),
                name="one_active_suppression_per_address",
            ),
            models.CheckConstraint(
                condition=Q(address=Lower("address")), name="suppression_address_lower_case"
            ),
            models.CheckConstraint(
                condition=Q(lifted_at__isnull=True) | ~Q(lift_reason=""),
                name="suppression_lifted_with_a_reason",
            ),
        ]

    def __str__(self):
        return f"{self.address or _('(erased)')} ({self.get_reason_display()})"

    def save(self, *args, **kwargs):
        if self.address is not None:
            self.address = normalize_address(self.address)
            self.address_hash = address_hash(self.address)
        super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        return self.lifted_at is None
