from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.models import Lead, choice_label, lead_manager_field


class Call(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "in", _("inbound")
        OUTBOUND = "out", _("outbound")
        INTERNAL = "internal", _("internal")

    class State(models.TextChoices):
        RINGING = "ringing", _("ringing")
        ANSWERED = "answered", _("answered")
        ON_HOLD = "on_hold", _("on hold")
        TRANSFERRED = "transferred", _("transferred")
        ENDED = "ended", _("ended")
        MISSED = "missed", _("missed")

    source = models.CharField(_("source"), max_length=50)
    call_id = models.CharField(_("PBX call id"), max_length=200)
    direction = models.CharField(_("direction"), max_length=10, choices=Direction.choices)
    from_raw = models.CharField(_("from"), max_length=100, blank=True)
    from_e164 = models.CharField(_("from (E.164)"), max_length=20, blank=True, db_index=True)
    to_raw = models.CharField(_("to"), max_length=100, blank=True)
    to_e164 = models.CharField(_("to (E.164)"), max_length=20, blank=True, db_index=True)
    line = models.CharField(_("line / DID"), max_length=100, blank=True)
    extension = models.CharField(_("extension"), max_length=20, blank=True)
    lead = models.ForeignKey(
        Lead,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
        verbose_name=_("lead"),
    )
    candidate_leads = models.ManyToManyField(
        Lead,
        blank=True,
        related_name="+",
        verbose_name=_("possible leads"),
        help_text=_("Several leads share this number: choose the right one."),
    )
    lead_manager = lead_manager_field()
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
        verbose_name=_("manager"),
    )
    state = models.CharField(_("state"), max_length=20, choices=State.choices)
    started_at = models.DateTimeField(_("started at"), db_index=True)
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    duration = models.PositiveIntegerField(_("duration, s"), null=True, blank=True)
    talk_time = models.PositiveIntegerField(_("talk time, s"), null=True, blank=True)
    hangup_cause = models.CharField(_("hang-up cause"), max_length=100, blank=True)
    recording_url = models.URLField(_("recording"), max_length=500, blank=True)
    transferred_to = models.CharField(_("transferred to"), max_length=50, blank=True)
    last_event_at = models.DateTimeField(_("last event at"))
    # The CRM's own clock, not the PBX's: what "still ringing" is judged by, so a PBX whose
    # clock is off (or that sends local time as UTC) cannot hide the caller's card.
    received_at = models.DateTimeField(_("last event received at"), default=timezone.now)
    activity = models.OneToOneField(
        "crm.Activity",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="call",
        verbose_name=_("timeline entry"),
    )
    missed_call_notified = models.BooleanField(default=False, editable=False)

    # A call still "ringing" this long after its last event reached the CRM lost its end event
    # somewhere: no card for it, and it keeps nobody "ringing".
    RINGING_WINDOW = timedelta(minutes=3)
    duration_from_pbx = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        constraints = [
            models.UniqueConstraint(fields=["source", "call_id"], name="unique_call_per_source")
        ]
        indexes = [
            models.Index(fields=["agent", "started_at"]),
            models.Index(fields=["extension", "state"], name="call_ringing_idx"),
            models.Index(
                fields=["agent", "received_at"],
                condition=Q(state="ringing"),
                name="call_ringing_agent_idx",
            ),
            # Today's missed calls to return: one in ten calls, read newest first.
            models.Index(
                fields=["-started_at"],
                condition=Q(direction="in", state="missed"),
                name="call_missed_idx",
            ),
            # A manager's calls list: the calls of their leads, newest first.
            models.Index(fields=["lead_manager", "-started_at"], name="call_lead_manager_idx"),
        ]

    def __str__(self):
        return f"{self.direction_label} {self.from_raw} → {self.to_raw}"

    def save(self, *args, update_fields=None, **kwargs):
        if update_fields is not None and "lead" not in update_fields:
            return super().save(*args, update_fields=update_fields, **kwargs)
        if update_fields is not None:
            update_fields = {*update_fields, "lead_manager"}
        with transaction.atomic():
            # Read under a lock a reassignment of the lead waits for (and takes first): either
            # it sees this call and moves it, or this reads the lead's new manager.
            self.lead_manager_id = (
                Lead.objects.select_for_update(no_key=True)
                .filter(pk=self.lead_id)
                .values_list("responsible_id", flat=True)
                .first()
                if self.lead_id is not None
                else None
            )
            super().save(*args, update_fields=update_fields, **kwargs)

    @property
    def direction_label(self) -> str:
        return choice_label(self.Direction, self.direction)

    @property
    def state_label(self) -> str:
        return choice_label(self.State, self.state)

    @property
    def is_over(self) -> bool:
        return self.state in (self.State.ENDED, self.State.MISSED)

    @property
    def lead_number(self) -> str:
        """The other party's number: the caller for inbound calls, the callee otherwise."""
        return self.from_e164 if self.direction == self.Direction.INBOUND else self.to_e164


class CallEvent(models.Model):
    """Every raw event a PBX sent, kept so a call can be rebuilt and audited."""

    source = models.CharField(_("source"), max_length=50)
    event_id = models.CharField(_("event id"), max_length=200)
    call = models.ForeignKey(
        Call, on_delete=models.CASCADE, null=True, related_name="events", verbose_name=_("call")
    )
    type = models.CharField(_("type"), max_length=50)
    occurred_at = models.DateTimeField(_("occurred at"))
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    payload = models.JSONField(_("payload"), default=dict)

    class Meta:
        ordering = ["occurred_at", "id"]
        verbose_name = _("call event")
        verbose_name_plural = _("call events")
        constraints = [
            models.UniqueConstraint(fields=["source", "event_id"], name="unique_call_event")
        ]

    def __str__(self):
        return f"{self.type} {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class RejectedPayload(models.Model):
    """Input that could not be used (bad JSON, missing fields), kept for inspection; the same
    body from the same source again (a sender retrying) is counted, not kept twice."""

    source = models.CharField(_("source"), max_length=50)
    error = models.CharField(_("error"), max_length=500)
    body = models.TextField(_("body"), blank=True)
    digest = models.CharField(max_length=64, blank=True, editable=False)  # SHA-256 of the body
    headers = models.JSONField(_("headers"), default=dict)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    times = models.PositiveIntegerField(_("times received"), default=1)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("rejected payload")
        verbose_name_plural = _("rejected payloads")
        constraints = [
            models.UniqueConstraint(
                fields=["source", "digest"],
                condition=~Q(digest=""),
                name="one_rejected_payload_per_body",
            )
        ]

    def __str__(self):
        return f"{self.source}: {self.error}"


class AgentState(models.Model):
    class State(models.TextChoices):
        AVAILABLE = "available", _("available")
        BUSY = "busy", _("busy (on a call)")
        RINGING = "ringing", _("ringing")
        ON_HOLD = "on_hold", _("on hold")
        AWAY = "away", _("away / do not disturb")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="agent_state",
        verbose_name=_("manager"),
    )
    state = models.CharField(
        _("state"), max_length=20, choices=State.choices, default=State.AVAILABLE
    )
    away = models.BooleanField(
        _("away / do not disturb"),
        default=False,
        help_text=_("Set by the manager; calls keep it until the manager clears it."),
    )
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)

    class Meta:
        verbose_name = _("agent state")
        verbose_name_plural = _("agent states")

    def __str__(self):
        return f"{self.user}: {self.get_state_display()}"


class InboundContact(models.Model):
    """One call or letter from a lead, counted once however often it is delivered."""

    class Channel(models.TextChoices):
        CALL = "call", _("call")
        EMAIL = "email", _("email")

    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    ref = models.CharField(_("reference"), max_length=300)
    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, related_name="inbound_contacts", verbose_name=_("lead")
    )
    occurred_at = models.DateTimeField(_("occurred at"))
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        verbose_name = _("inbound contact")
        verbose_name_plural = _("inbound contacts")
        constraints = [
            models.UniqueConstraint(fields=["channel", "ref"], name="unique_inbound_contact")
        ]

    def __str__(self):
        return f"{self.get_channel_display()} {self.ref}"


class InboundEmail(models.Model):
    class Kind(models.TextChoices):
        REPLY = "reply", _("reply")
        AUTO_REPLY = "auto_reply", _("auto-reply")
        BOUNCE = "bounce", _("bounce")

    class MatchedBy(models.TextChoices):
        UNMATCHED = "", _("not matched")
        THREAD = "thread", _("In-Reply-To / References")
        SENDER = "sender", _("sender's address")
        MANUAL = "manual", _("attached by hand")

    message_id = models.CharField(_("Message-ID"), max_length=500)
    source = models.CharField(_("source"), max_length=50)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    from_email = models.EmailField(_("from"), max_length=254, blank=True)
    from_name = models.CharField(_("sender's name"), max_length=200, blank=True)
    to = models.CharField(_("to"), max_length=1000, blank=True)
    subject = models.CharField(_("subject"), max_length=1000, blank=True)
    text = models.TextField(_("text"), blank=True)
    in_reply_to = models.CharField(_("In-Reply-To"), max_length=1000, blank=True)
    references = models.TextField(_("References"), blank=True)
    headers = models.JSONField(_("headers"), default=dict)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    lead = models.ForeignKey(
        Lead,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound_emails",
        verbose_name=_("lead"),
    )
    matched_by = models.CharField(
        _("matched by"), max_length=10, choices=MatchedBy.choices, blank=True
    )
    outbound_message = models.ForeignKey(
        "nurture.OutboundMessage",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replies",
        verbose_name=_("in reply to our message"),
    )

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("incoming email")
        verbose_name_plural = _("incoming emails")
        constraints = [
            models.UniqueConstraint(fields=["message_id"], name="unique_inbound_message_id")
        ]
        indexes = [
            models.Index(fields=["received_at"], condition=Q(lead=None), name="unmatched_mail_idx")
        ]

    def __str__(self):
        return f"{self.from_email}: {self.subject}"


class MailboxCursor(models.Model):
    """Where IMAP polling of one mailbox folder got to."""

    host = models.CharField(_("host"), max_length=200)
    username = models.CharField(_("user"), max_length=200)
    folder = models.CharField(_("folder"), max_length=200)
    uidvalidity = models.BigIntegerField(_("UIDVALIDITY"), null=True)
    last_uid = models.BigIntegerField(_("last UID"), default=0)
    checked_at = models.DateTimeField(_("checked at"), null=True)

    class Meta:
        verbose_name = _("mailbox cursor")
        verbose_name_plural = _("mailbox cursors")
        constraints = [
            models.UniqueConstraint(
                fields=["host", "username", "folder"], name="one_cursor_per_folder"
            )
        ]

    def __str__(self):
        return f"{self.username}@{self.host}/{self.folder}: {self.last_uid}"
