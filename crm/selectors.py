"""Reads from the CRM domain."""

from dataclasses import dataclass

import phonenumbers
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Exists, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KT

from crm import paging
from crm.models import Activity, Lead, LeadStatus, Task, normalize_search
from crm.phones import to_e164

SUPERVISORS_GROUP = "Supervisors"
MANAGERS_GROUP = "Managers"


def can_see_all_leads(user) -> bool:
    return user.is_superuser or user.has_perm("crm.view_all_leads")


def leads_visible_to(user, queryset: QuerySet | None = None) -> QuerySet:
    """Supervisors see every lead; everybody else only the leads they are responsible for."""
    queryset = Lead.objects.all() if queryset is None else queryset
    if can_see_all_leads(user):
        return queryset
    return queryset.filter(responsible=user)


def with_status_names(activities: QuerySet) -> QuerySet:
    """Timeline entries with the names of the statuses a status change went between, read in
    the same query (`Activity.description` uses them)."""

    def name(code, language):
        statuses = LeadStatus.objects.filter(code=OuterRef(code))
        return Subquery(statuses.values(f"name_{language}")[:1])

    return activities.annotate(
        from_status_code=KT("payload__from"), to_status_code=KT("payload__to")
    ).annotate(
        **{
            f"{side}_status_{language}": name(f"{side}_status_code", language)
            for side in ("from", "to")
            for language in ("ru", "en")
        }
    )


def people_to_assign(user):
    """Whom `user` may make responsible for a lead: a supervisor, any active member of the
    sales groups; anybody else, only themselves."""
    users = get_user_model().objects.filter(is_active=True)
    if not can_see_all_leads(user):
        return users.filter(pk=user.pk)
    sales = users.filter(groups__name__in=[MANAGERS_GROUP, SUPERVISORS_GROUP]).distinct()
    return sales.select_related("profile").order_by("first_name", "last_name", "username")


def search_leads(queryset: QuerySet, term: str) -> QuerySet:
    """Leads whose name, email, title or company contain every word of `term`, in any case and
    order («петров иван» and «ИВАН» find Иван Петров), or whose phone is `term`.

    A whole email address finds the leads with that address (any case), a part of one those
    whose email contains it. A phone is found in whatever format a person types it
    (`8 (916) 123-45-67`, `+7 916 1234567`), and by five or more of its digits in a row. The
    words are compared with Lead.search_text (normalised the same way), so SQLite matches
    Cyrillic in any case too; on PostgreSQL trigram indexes serve both.
    """
    words = normalize_search(term).split()
    if not words:
        return queryset
    address = term.strip()
    if len(words) == 1 and _is_email_address(address):
        # A whole address is looked up as the lead's email first, by its own index: its
        # trigrams ("@gm", "mai", ".ru" ...) are shared by most leads, and a substring search
        # for them reads most of the trigram index. Half typed ("ivan@mail.r") it finds
        # nothing, and the substring search below runs.
        with_address = queryset.filter(email=address.lower())
        if with_address.exists():
            return with_address
    match = Q()
    for word in words:
        match &= Q(search_text__contains=word)
    e164 = to_e164(term)
    if e164:
        match |= Q(phone=e164)
    for digits in _phone_fragments(term):
        match |= Q(phone__contains=digits)
    return queryset.filter(match)


def _is_email_address(text: str) -> bool:
    try:
        validate_email(text)
    except ValidationError:
        return False
    return True


def _phone_fragments(term: str) -> set[str]:
    """The digits of a partial number, as they may stand in an E.164 phone: typed after the
    national prefix (8 916 123 in Russia) they follow the country code (+7 916 123...)."""
    digits = "".join(ch for ch in term if ch.isdigit())
    if len(digits) < 5:
        return set()
    fragments = {digits}
    region = phonenumbers.PhoneMetadata.metadata_for_region(settings.PHONE_DEFAULT_REGION)
    prefix = region.national_prefix if region else None
    if prefix and digits.startswith(prefix) and not term.lstrip().startswith("+"):
        fragments.add(f"{region.country_code}{digits[len(prefix) :]}")
    return fragments


def duplicates_of(lead: Lead) -> QuerySet:
    """Other leads with `lead`'s email or phone (whoever is responsible for them), for the
    form to show before a second copy of a client is saved."""
    match = Q()
    if lead.email:
        match |= Q(email=lead.email)
    if lead.phone:
        match |= Q(phone=lead.phone)
    if not match:
        return Lead.objects.none()
    return (
        Lead.objects.filter(match)
        .exclude(pk=lead.pk)
        .select_related("status", "responsible__profile")
        .order_by("-created_at")[:10]
    )


def stopped_by_the_lead(user, *, since) -> QuerySet:
    """`user`'s leads whose status a reply or a call changed since `since` (nurturing stopped)
    and that nobody has done anything with after that: the newest first."""
    changes = Activity.objects.filter(
        kind=Activity.Kind.STATUS_CHANGE,
        created_at__gte=since,
        payload__cause__in=["reply", "call"],
        lead__responsible=user,
    )
    touched_after = Activity.objects.filter(
        lead=OuterRef("lead"), actor__isnull=False, created_at__gt=OuterRef("created_at")
    )
    return (
        changes.exclude(Exists(touched_after))
        .select_related("lead__status")
        .order_by("-created_at")
    )


def status_by_code(code: str) -> Subquery:
    """The status `code` as a subquery, to filter leads by: unlike a join on the statuses, it
    lets PostgreSQL estimate the leads of that status from their own column's statistics, and a
    plan built on a guess of 72 rows where there are 3,000 runs twice as long."""
    return Subquery(LeadStatus.objects.filter(code=code).values("pk"))


def new_leads_not_contacted(user) -> QuerySet:
    """`user`'s leads still New with nothing on their timeline but their creation: oldest
    first, since they have waited longest."""
    contacted = Activity.objects.filter(lead=OuterRef("pk")).exclude(kind=Activity.Kind.CREATED)
    return (
        Lead.objects.filter(responsible=user, status=status_by_code(LeadStatus.NEW))
        .exclude(Exists(contacted))
        .order_by("status_changed_at", "pk")  # lead_manager_status_idx
    )


# A column counts its leads as far as the lists do, then says "over": counting every lead of
# a 100,000-lead CRM per status took a supervisor's board longer than the rest of it.
COLUMN_COUNT_CAP = paging.COUNT_CAP


@dataclass(frozen=True)
class PipelineColumn:
    status: LeadStatus
    count: int  # COLUMN_COUNT_CAP + 1 when there are more
    leads: list
    next_offset: int | None  # where the column goes on, None at its end

    @property
    def is_capped(self) -> bool:
        return self.count > COLUMN_COUNT_CAP


def pipeline_column(leads: QuerySet, status, *, offset=0, length=20, count=None) -> PipelineColumn:
    """One status's leads, those waiting longest in it first."""
    page = list(
        leads.filter(status=status)
        .select_related("responsible__profile")
        .order_by("status_changed_at", "pk")[offset : offset + length + 1]
    )
    more = len(page) > length
    return PipelineColumn(status, count or 0, page[:length], offset + length if more else None)


class CountUpTo(Subquery):
    """The number of rows a sliced subquery finds: `CountUpTo(rows[:n])`, at most n."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS counted)"
    output_field = IntegerField()


def pipeline_columns(leads: QuerySet, *, length=20) -> list[PipelineColumn]:
    """A column per status: its count up to the cap (read with the statuses, in one query: an
    index-only scan per status that stops at the cap) and its first leads (one query each)."""
    in_status = leads.filter(status=OuterRef("pk")).order_by().values("pk")
    statuses = LeadStatus.objects.order_by("order").annotate(
        lead_count=CountUpTo(in_status[: COLUMN_COUNT_CAP + 1])
    )
    return [
        pipeline_column(leads, status, length=length, count=status.lead_count)
        for status in statuses
    ]


def tasks_visible_to(user) -> QuerySet:
    """Tasks on the leads `user` may see."""
    tasks = Task.objects.select_related("lead", "assigned_to__profile")
    if can_see_all_leads(user):
        return tasks
    return tasks.filter(lead__responsible=user)


def open_tasks_of(user) -> QuerySet:
    """What `user` has to do, soonest first."""
    return (
        tasks_visible_to(user)
        .filter(assigned_to=user, done_at__isnull=True)
        .order_by("due_at", "pk")
    )


def with_next_step(leads: QuerySet) -> QuerySet:
    """Leads with their next open task's title and due time (None: no next step)."""
    first_open = Task.objects.filter(lead=OuterRef("pk"), done_at__isnull=True).order_by(
        "due_at", "pk"
    )
    return leads.annotate(
        next_task_due=Subquery(first_open.values("due_at")[:1]),
        next_task_title=Subquery(first_open.values("title")[:1]),
    )


def list_rows(user, ids) -> list[Lead]:
    """The lead list's rows for `ids` (one page, already filtered and ordered), in that order,
    with their status, manager and next step: read for these rows only, not for every row the
    page's offset passes over."""
    leads = (
        leads_visible_to(user).filter(pk__in=ids).select_related("status", "responsible__profile")
    )
    by_pk = {lead.pk: lead for lead in with_next_step(leads)}
    return [by_pk[pk] for pk in ids if pk in by_pk]


def without_next_step(leads: QuerySet) -> QuerySet:
    return leads.exclude(Exists(Task.objects.filter(lead=OuterRef("pk"), done_at__isnull=True)))
