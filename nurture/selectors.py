"""Reads for nurturing: what a sequence will send and when, who may see which rows, and which
addresses are suppressed."""

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet, Subquery, prefetch_related_objects
from django.template import TemplateSyntaxError
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext

from crm.models import Lead
from crm.selectors import can_see_all_leads
from nurture import rendering, schedule
from nurture.calendar import WorkingCalendar
from nurture.models import (
    Enrollment,
    MessageTemplate,
    OutboundMessage,
    Sequence,
    Suppression,
    normalize_address,
)

PLANNED = "planned"
STEP_FORMAT = "D, j M, H:i"  # with the weekday: sends move around weekends and holidays


@dataclass(frozen=True)
class PlannedSend:
    """One email of an enrollment: dispatched already (its message's state) or still planned."""

    number: int
    at: datetime
    state: str
    reasons: list[str] = field(default_factory=list)

    @property
    def state_label(self) -> str:
        if self.state in OutboundMessage.State.values:
            return OutboundMessage.State(self.state).label
        return gettext("planned")


@dataclass(frozen=True)
class Preview:
    """One template of a sequence rendered for a lead, and which of the emails use it."""

    numbers: list[int]
    template: MessageTemplate
    email: rendering.RenderedEmail | None
    error: str = ""


def enrollments_visible_to(user, queryset: QuerySet | None = None) -> QuerySet:
    """Supervisors see every enrollment; managers only those of the leads they are responsible
    for."""
    queryset = Enrollment.objects.all() if queryset is None else queryset
    if can_see_all_leads(user):
        return queryset
    return queryset.filter(lead__responsible=user)


def messages_visible_to(user, queryset: QuerySet | None = None) -> QuerySet:
    """Supervisors see the whole outbox; managers only the messages to their own leads."""
    queryset = OutboundMessage.objects.all() if queryset is None else queryset
    if can_see_all_leads(user):
        return queryset
    return queryset.filter(enrollment__lead__responsible=user)


def suppressions_visible_to(user, queryset: QuerySet | None = None) -> QuerySet:
    """Supervisors see the whole suppression list; managers only the addresses of the leads
    they are responsible for."""
    queryset = Suppression.objects.all() if queryset is None else queryset
    if can_see_all_leads(user):
        return queryset
    return queryset.filter(
        address__in=Lead.objects.filter(responsible=user).exclude(email="").values("email")
    )


def active_suppression(address: str) -> Suppression | None:
    """The suppression that keeps `address` from being emailed, if there is one."""
    address = normalize_address(address)
    return Suppression.objects.active().filter(address=address).first() if address else None


def suppression_reason(address_field: str) -> Subquery:
    """For a query's rows: why the address in `address_field` is suppressed (a
    Suppression.Reason), or None. One lookup in the active suppressions' unique index per row,
    inside the query itself."""
    active = Suppression.objects.active().filter(address=OuterRef(address_field))
    return Subquery(active.order_by().values("reason")[:1])  # one row at most: no sort


def address_is_suppressed(address_field: str) -> Exists:
    """For a query's rows: whether the address in `address_field` is suppressed (the same
    index lookup as `suppression_reason`)."""
    return Exists(Suppression.objects.active().filter(address=OuterRef(address_field)))


def step_description(enrollment: Enrollment) -> str:
    """Where a lead's nurturing stands, in a line: "Email 2 of 6 sent, next on Thu, 27 Nov,
    10:00", "Stopped on … after email 2 of 6: lead replied"."""
    values = {"sent": enrollment.sent_count, "total": enrollment.sequence.max_messages}
    if enrollment.state == Enrollment.State.ACTIVE:
        if enrollment.next_send_at is None:
            return gettext("Email %(sent)d of %(total)d sent") % values
        values["when"] = date_format(timezone.localtime(enrollment.next_send_at), STEP_FORMAT)
        if enrollment.sent_count == 0:
            return gettext("Email 1 of %(total)d goes on %(when)s") % values
        return gettext("Email %(sent)d of %(total)d sent, next on %(when)s") % values
    values["when"] = date_format(
        timezone.localtime(enrollment.ended_at or enrollment.enrolled_at), STEP_FORMAT
    )
    if enrollment.state == Enrollment.State.COMPLETED:
        return gettext("Finished on %(when)s: %(sent)d of %(total)d emails sent") % values
    values["reason"] = enrollment.get_halt_reason_display()
    if enrollment.sent_count == 0:
        return gettext("Stopped on %(when)s before the first email: %(reason)s") % values
    return gettext("Stopped on %(when)s after email %(sent)d of %(total)d: %(reason)s") % values


def planned_sends(
    enrollment: Enrollment, *, calendar: WorkingCalendar | None = None
) -> list[PlannedSend]:
    """Every email of `enrollment`: the dispatched ones as their messages stand, then, while it
    is active, the dates of the rest, each with the reasons it moved.

    A few queries whatever the number of steps: the messages (none if prefetched), the company
    calendar, and the lead and sequence unless already loaded.
    """
    messages = sorted(enrollment.messages.all(), key=lambda message: message.number)
    sends = [
        PlannedSend(message.number, message.sent_at or message.scheduled_for, message.state)
        for message in messages
    ]
    if enrollment.state != Enrollment.State.ACTIVE or enrollment.next_send_at is None:
        return sends
    sequence, lead = enrollment.sequence, enrollment.lead
    number = enrollment.sent_count + 1
    if number > sequence.max_messages:
        return sends
    calendar = calendar or schedule.company_calendar()
    # The next send was planned from the previous dispatch (or the enrollment): plan it again
    # from there only to learn why it landed where it did.
    previous = messages[-1].scheduled_for if messages else enrollment.enrolled_at
    _, shifts = schedule.first_send(sequence, lead, previous, calendar)
    return sends + _chain(sequence, lead, number, enrollment.next_send_at, shifts, calendar)


def sends_if_enrolled(
    sequence: Sequence,
    lead,
    *,
    now: datetime | None = None,
    calendar: WorkingCalendar | None = None,
) -> list[PlannedSend]:
    """When each email of `sequence` would go to `lead` if the lead were enrolled at `now`."""
    now = now or timezone.now()
    calendar = calendar or schedule.company_calendar()
    first, shifts = schedule.first_send(sequence, lead, now, calendar)
    return _chain(sequence, lead, 1, first, shifts, calendar)


def _chain(sequence, lead, number, at, shifts, calendar) -> list[PlannedSend]:
    """Planned send `number` at `at` (moved by `shifts`) and all after it, each planned from the
    one before as the dispatcher will, when each goes on time."""
    sends = [PlannedSend(number, at, PLANNED, [str(shift) for shift in shifts])]
    for following in range(number + 1, sequence.max_messages + 1):
        at, shifts = schedule.next_send(sequence, lead, at, at, calendar)
        sends.append(PlannedSend(following, at, PLANNED, [str(shift) for shift in shifts]))
    return sends


def previews(sequence: Sequence, lead) -> list[Preview]:
    """Each template of `sequence` as `lead` would get it, in the lead's language, from the
    lead's manager; a template that does not render says why instead."""
    prefetch_related_objects([sequence], "templates")
    language = rendering.lead_language(lead)
    positions = len({template.position for template in sequence.templates.all()})
    context = rendering.template_context(
        lead,
        lead.responsible,
        unsubscribe=settings.SITE_URL + reverse("nurture:unsubscribe", args=["preview"]),
    )
    result = []
    for index in range(min(positions, sequence.max_messages)):
        template = rendering.template_for(sequence, index + 1, language)
        numbers = list(range(index + 1, sequence.max_messages + 1, positions))
        try:
            email, error = rendering.render(template, context, language), ""
        except TemplateSyntaxError as exc:
            email, error = None, str(exc)
        result.append(Preview(numbers, template, email, error))
    return result
