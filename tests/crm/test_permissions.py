import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from crm.selectors import leads_visible_to


@pytest.fixture
def leads(make_lead, alice, bob):
    return {
        "alice": make_lead(alice, title="Alice's project", email="a@example.com"),
        "bob": make_lead(bob, title="Bob's project", email="b@example.com"),
    }


def test_the_two_groups_are_created_with_their_permissions(db):
    managers = set(
        Group.objects.get(name="Managers").permissions.values_list("codename", flat=True)
    )
    supervisors = set(
        Group.objects.get(name="Supervisors").permissions.values_list("codename", flat=True)
    )

    assert {"view_lead", "add_lead", "change_lead"} <= managers
    assert "view_all_leads" not in managers
    assert "delete_lead" not in managers
    assert {"view_all_leads", "delete_lead", "change_leadstatus"} <= supervisors


def test_a_manager_sees_only_own_leads(leads, alice):
    assert list(leads_visible_to(alice)) == [leads["alice"]]


def test_a_supervisor_sees_every_lead(leads, olga):
    assert set(leads_visible_to(olga)) == set(leads.values())


def test_a_manager_cannot_open_another_managers_lead_in_the_admin(leads, alice, client):
    client.force_login(alice)

    own = client.get(reverse("admin:crm_lead_change", args=[leads["alice"].pk]))
    other = client.get(reverse("admin:crm_lead_change", args=[leads["bob"].pk]))
    missing = client.get(reverse("admin:crm_lead_change", args=[leads["bob"].pk + 1000]))

    assert own.status_code == 200
    assert other.status_code == missing.status_code == 404  # as if it did not exist
    assert b"Bob&#x27;s project" not in other.content
    assert other.content == missing.content


def test_a_manager_cannot_edit_another_managers_lead(leads, alice, client):
    client.force_login(alice)
    url = reverse("admin:crm_lead_change", args=[leads["bob"].pk])

    client.post(url, {"title": "Stolen", "status": leads["bob"].status.pk})

    leads["bob"].refresh_from_db()
    assert leads["bob"].title == "Bob's project"


def test_the_admin_list_shows_a_manager_only_own_leads(leads, alice, client):
    client.force_login(alice)

    page = client.get(reverse("admin:crm_lead_changelist")).content.decode()

    assert "Alice&#x27;s project" in page
    assert "Bob&#x27;s project" not in page


def test_the_admin_list_shows_a_supervisor_every_lead(leads, olga, client):
    client.force_login(olga)

    page = client.get(reverse("admin:crm_lead_changelist")).content.decode()

    assert "Alice&#x27;s project" in page
    assert "Bob&#x27;s project" in page


def test_a_manager_can_only_make_themselves_responsible(alice, bob, client):
    client.force_login(alice)

    form = client.get(reverse("admin:crm_lead_add")).context["adminform"].form

    assert list(form.fields["responsible"].queryset) == [alice]


def test_a_manager_cannot_delete_leads(leads, alice, client):
    client.force_login(alice)

    response = client.get(reverse("admin:crm_lead_delete", args=[leads["alice"].pk]))

    assert response.status_code == 403
