"""Each call keeps its lead's manager (Call.lead_manager), which the calls a manager may see
are read by: it is right however the call got its lead, and follows the lead to a new manager."""

import random

import pytest
from django.db import connection, transaction
from django.db.models import Q
from django.urls import reverse

from crm import erasure, services
from crm.models import Lead
from telephony.calls.selectors import calls_visible_to
from telephony.calls.services import apply_event, choose_lead
from telephony.models import Call
from tests.nurture.test_races import Background, blockers_of
from tests.plans import plan_of, queries_of
from tests.telephony.conftest import call_event
from tests.telephony.test_call_admin import make_call

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:telephony_call_changelist")


def visible_ids(user) -> set[int]:
    return set(calls_visible_to(user).values_list("pk", flat=True))


def test_a_call_matched_by_its_number_keeps_its_leads_manager(apply, calling_lead, alice):
    [call] = apply(call_event("call.ringing", extension="202"))

    call.refresh_from_db()
    assert call.lead == calling_lead and call.lead_manager == alice


def test_a_call_the_crm_placed_keeps_its_leads_manager(bob, make_lead):
    lead = make_lead(bob, phone_raw="+7 903 000-11-22")

    call = apply_event("crm", call_event("call.ringing", direction="out"), lead_id=lead.pk)

    assert Call.objects.get(pk=call.pk).lead_manager == bob


def test_a_call_on_a_shared_number_gets_the_manager_of_the_lead_chosen(
    apply, make_lead, alice, bob
):
    make_lead(alice, phone_raw="+79161234567", email="a@x.example")
    bobs = make_lead(bob, phone_raw="+79161234567", email="b@x.example")
    [call] = apply(call_event("call.ringing"))
    assert Call.objects.get(pk=call.pk).lead_manager is None

    choose_lead(call, bobs)

    assert Call.objects.get(pk=call.pk).lead_manager == bob


def test_a_reassigned_leads_calls_go_to_its_new_manager(alice, bob, olga, make_lead):
    lead = make_lead(alice)
    call = make_call("c1", lead=lead)
    assert visible_ids(alice) == {call.pk} and visible_ids(bob) == set()

    services.reassign(lead, bob, by=olga)

    assert Call.objects.get(pk=call.pk).lead_manager == bob
    assert visible_ids(alice) == set() and visible_ids(bob) == {call.pk}


def test_the_calls_of_a_deleted_lead_stay_with_the_manager_who_took_them_only(
    alice, bob, make_lead
):
    lead = make_lead(alice)
    taken_by_bob = make_call("c1", lead=lead, agent=bob)
    make_call("c2", lead=lead)

    lead.delete()

    assert visible_ids(alice) == set() and visible_ids(bob) == {taken_by_bob.pk}


def test_an_erased_leads_calls_keep_no_manager(alice, olga, make_lead):
    lead = make_lead(alice, phone_raw="+7 916 555-00-00")
    call = make_call("c1", lead=lead)

    erasure.erase_lead(lead, by=olga)

    call.refresh_from_db()
    assert call.lead is None and call.lead_manager is None
    assert visible_ids(alice) == set()


def test_a_colleagues_lead_is_hidden_from_a_manager_by_its_copied_manager(
    client, alice, bob, make_lead
):
    bobs = make_lead(bob, last_name="Bakerov")
    make_call("c1", lead=bobs, agent=alice)
    client.force_login(alice)

    page = client.get(CHANGELIST).content.decode()

    assert "Bakerov" not in page and "a lead of Bob Manager" in page


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.postgres
def test_a_call_matched_while_its_lead_is_reassigned_gets_the_new_manager(calling_lead, bob, olga):
    if connection.vendor != "postgresql":
        pytest.skip("needs a row lock one connection holds and another waits for")
    with transaction.atomic():
        assert services.reassign(calling_lead, bob, by=olga)  # the lead's row locked
        pbx = Background(lambda: apply_event("pbx", call_event("call.ringing")))
        pbx.start()
        blockers_of(pbx)  # the call waits to read whose lead it is

    call = pbx.outcome()
    assert call.lead == calling_lead and Call.objects.get(pk=call.pk).lead_manager == bob


def old_rule(user):
    """Who saw which call before the manager was copied onto calls: read through the lead."""
    candidates = Call.candidate_leads.through.objects.filter(lead__responsible=user)
    return set(
        Call.objects.filter(
            Q(lead__responsible=user) | Q(agent=user) | Q(pk__in=candidates.values("call_id"))
        ).values_list("pk", flat=True)
    )


def test_managers_see_the_same_calls_as_by_their_leads_after_any_changes(
    alice, bob, make_user, olga, make_lead
):
    carol = make_user("carol", "Managers")
    managers = [alice, bob, carol]
    chance = random.Random(20261202)
    leads = [
        make_lead(chance.choice(managers + [None]), email=f"l{k}@x.example") for k in range(12)
    ]
    for k in range(40):
        lead = chance.choice(leads + [None])
        call = make_call(f"c{k}", lead=lead, agent=chance.choice(managers + [None]))
        if lead is None and chance.random() < 0.5:
            call.candidate_leads.set(chance.sample(leads, 2))
        if chance.random() < 0.3:
            reassigned = chance.choice(leads)
            services.reassign(reassigned, chance.choice(managers), by=olga)
        if chance.random() < 0.05:
            gone = leads.pop(chance.randrange(len(leads)))
            gone.delete()

    for manager in managers:
        assert visible_ids(manager) == old_rule(manager), manager.username
    assert Lead.objects.count() == len(leads)


@pytest.mark.postgres
def test_on_postgresql_a_managers_calls_list_reads_indexes_not_every_call(
    client, alice, bob, make_lead
):
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    make_call("c1", lead=make_lead(alice), agent=bob)
    client.force_login(alice)
    [count] = queries_of(
        client, CHANGELIST, starting="SELECT COUNT(*)", containing="telephony_call"
    )

    assert "call_lead_manager_idx" in plan_of(count) and "crm_lead" not in plan_of(count)
