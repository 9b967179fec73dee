"""Reads for nurturing: what a sequence will send and when, who may see which rows, and which
addresses are suppressed."""

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    QuerySet,
    Subquery,
    prefetch_related_objects,
)
from django.db.models.fields.json import KT
from django.template import TemplateSyntaxError
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext

from crm.models import Activity, Lead
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
    return queryset.filter(lead_manager=user)


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


# --- The nurturing page: enrollments, and which email works ----------------------------------

ANSWERS = (Enrollment.HaltReason.REPLY, Enrollment.HaltReason.CALL)


@dataclass(frozen=True)
class EmailResult:
    """Email `number` of a sequence: how many enrollments it went to, and how many leads
    answered (wrote back, called) after it and before the next one."""

    number: int
    sent: int
    replied: int
    called: int

    @property
    def answered(self) -> int:
        return self.replied + self.called

    @property
    def rate(self) -> float | None:
        """The share that answered, in percent; None when it went to nobody."""
        return 100 * self.answered / self.sent if self.sent else None

    @property
    def bar_width(self) -> int:
        """The rate as a whole number, for the bar's SVG (never localised: "23", not "23,0")."""
        return round(self.rate or 0)


@dataclass(frozen=True)
class SequenceResults:
    sequence: Sequence
    emails: list[EmailResult]
    answered_before_the_first: int  # stopped by a reply or a call before email 1 went


def enrollments_on_the_page(
    user, *, finished: bool, states=None, sequence=None, manager=None
) -> QuerySet:
    """The ids of the nurturing page's enrollments that `user` may see: the active ones by
    their next send (soonest first), or the finished ones (completed or halted) newest first.
    Ids only, so that the database sorts and pages the enrollments alone; `enrollment_rows`
    reads one page's rows."""
    enrollments = enrollments_visible_to(user)
    if states:
        enrollments = enrollments.filter(state__in=states)
    if sequence is not None:
        enrollments = enrollments.filter(sequence=sequence)
    if manager is not None:
        enrollments = enrollments.filter(lead__responsible=manager)
    if finished:
        order = (F("ended_at").desc(nulls_last=True), "-pk")
    else:
        order = (F("next_send_at").asc(nulls_last=True), "pk")
    return enrollments.order_by(*order).values_list("pk", flat=True)


def enrollment_rows(ids) -> list[Enrollment]:
    """The enrollments `ids` (one page of `enrollments_on_the_page`), in that order, with their
    sequence, lead, lead's status and manager: one query."""
    ids = list(ids)
    rows = Enrollment.objects.filter(pk__in=ids).select_related(
        "sequence", "lead__status", "lead__responsible__profile"
    )
    by_id = {row.pk: row for row in rows}
    return [by_id[pk] for pk in ids if pk in by_id]


def email_results(user, *, sequence=None, manager=None) -> list[SequenceResults]:
    """For each sequence (or just `sequence`) and each of its emails, over the enrollments
    `user` may see (of `manager`'s leads only, if given): how many got it, how many answered
    after it. Four queries whatever the numbers: the sequences, the sent emails counted per
    number, and the answers counted per last email sent (of the halted, of the completed).

    An answer belongs to the last email that actually went before it: a reply or a call that
    halted the enrollment (a message dispatched but cancelled by the halt does not count), or,
    once all emails went, the lead's reply or call that ended its Nurturing status before the
    lead was enrolled again.
    """
    enrollments = enrollments_visible_to(user)
    messages = messages_visible_to(
        user, OutboundMessage.objects.filter(state=OutboundMessage.State.SENT)
    )
    sequences = Sequence.objects.order_by("name")
    if manager is not None:
        enrollments = enrollments.filter(lead__responsible=manager)
        messages = messages.filter(enrollment__lead__responsible=manager)
    if sequence is not None:
        sequences = sequences.filter(pk=sequence.pk)
        enrollments = enrollments.filter(sequence=sequence)
        messages = messages.filter(sequence=sequence)
    sent = messages.values_list("sequence_id", "number").annotate(count=Count("*"))
    with _without_jit():
        sent_counts = {
            (sequence_id, number): count for sequence_id, number, count in sent.order_by()
        }
        answers = {
            (sequence_id, after, answer): count
            for sequence_id, after, answer, count in _answers(enrollments)
        }
    went_through = {key[0] for key in (*sent_counts, *answers)}
    results = []
    for each in sequences:
        if not (each.is_active or each.pk in went_through or sequence is not None):
            continue  # switched off, and nobody visible went through it
        emails = [
            EmailResult(
                number,
                sent_counts.get((each.pk, number), 0),
                answers.get((each.pk, number, Enrollment.HaltReason.REPLY), 0),
                answers.get((each.pk, number, Enrollment.HaltReason.CALL), 0),
            )
            for number in range(1, each.max_messages + 1)
        ]
        before = sum(answers.get((each.pk, None, answer), 0) for answer in ANSWERS)
        results.append(SequenceResults(each, emails, before))
    return results


@contextmanager
def _without_jit():
    """PostgreSQL compiles (JIT) a query whose estimated cost passes jit_above_cost, as these
    grouped counts over every enrollment do: about 30 ms of compiling for a query that then
    runs in 15. Off for this transaction only; other databases have nothing to switch off."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
        yield


def _answers(enrollments: QuerySet):
    """(sequence id, number of the last email sent or None, "reply", "call" or None, count)
    of the enrollments among `enrollments` that the lead answered (None: not answered)."""
    last_sent = OutboundMessage.objects.filter(
        enrollment=OuterRef("pk"), state=OutboundMessage.State.SENT
    ).order_by("-number")
    enrolled_again = Enrollment.objects.filter(
        lead=OuterRef(OuterRef("lead_id")),
        sequence=OuterRef(OuterRef("sequence_id")),
        enrolled_at__gt=OuterRef(OuterRef("enrolled_at")),
        enrolled_at__lte=OuterRef("created_at"),
    )
    # The cause of a status change by the lead is "reply" or "call", as the halt reasons are;
    # after the last email it counts until the lead is enrolled in the sequence again.
    answer_after_the_end = (
        Activity.objects.filter(
            lead=OuterRef("lead_id"),
            kind=Activity.Kind.STATUS_CHANGE,
            payload__cause__in=list(ANSWERS),
            created_at__gte=OuterRef("ended_at"),
        )
        .exclude(Exists(enrolled_again))
        .order_by("created_at")
    )
    after = Subquery(last_sent.values("number")[:1])
    halted = enrollments.filter(state=Enrollment.State.HALTED, halt_reason__in=ANSWERS).annotate(
        after=after, answer=F("halt_reason")
    )
    # The completed ones nobody answered group under an answer of None, which the caller
    # ignores: filtering them out would run the subquery twice per row.
    completed = enrollments.filter(state=Enrollment.State.COMPLETED).annotate(
        after=after, answer=Subquery(answer_after_the_end.values(cause=KT("payload__cause"))[:1])
    )
    # Two queries rather than one: a query for both runs a subquery twice per row.
    for answered in (halted, completed):
        yield from (
            answered.values_list("sequence_id", "after", "answer")
            .annotate(count=Count("pk"))
            .order_by()
        )
