"""Reads from the CRM domain."""

from django.db.models import Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KT

from crm.models import Lead, LeadStatus
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


def with_last_activity(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(last_activity_at=Max("activities__created_at"))


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


def search_leads(queryset: QuerySet, term: str) -> QuerySet:
    """Leads whose name, email, title or company contain `term`, or whose phone is `term`.

    A phone is found in whatever format a person types it (`8 (916) 123-45-67`, `+7 916 1234567`).
    """
    term = term.strip()
    if not term:
        return queryset
    match = (
        Q(first_name__icontains=term)
        | Q(last_name__icontains=term)
        | Q(email__icontains=term)
        | Q(title__icontains=term)
        | Q(company__icontains=term)
    )
    e164 = to_e164(term)
    if e164:
        match |= Q(phone=e164)
    digits = "".join(ch for ch in term if ch.isdigit())
    if len(digits) >= 5:
        match |= Q(phone__contains=digits)
    return queryset.filter(match)
