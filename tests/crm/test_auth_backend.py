"""The authentication backend: Django's ModelBackend, its permissions read in one query."""

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission

from crm.auth import ModelBackendWithProfile

pytestmark = pytest.mark.django_db


def fresh(user):
    return type(user).objects.get(pk=user.pk)


@pytest.mark.parametrize("who", ["alice", "olga", "superuser", "inactive", "own permission"])
def test_permissions_are_djangos_own_read_in_one_query(
    who, alice, olga, make_user, django_assert_num_queries
):
    user = {"alice": alice, "olga": olga}.get(who)
    if who == "superuser":
        user = make_user("root", is_superuser=True)
    if who == "inactive":
        user = make_user("gone", "Supervisors", is_active=False)
    if who == "own permission":
        user = make_user("solo")
        user.user_permissions.add(Permission.objects.get(codename="view_all_leads"))

    signed_in = fresh(user)
    with django_assert_num_queries(0 if who == "inactive" else 1):
        ours = ModelBackendWithProfile().get_all_permissions(signed_in)

    assert ours == ModelBackend().get_all_permissions(fresh(user))
    assert bool(ours) == (who != "inactive")
    assert ("crm.view_all_leads" in ours) == (who in {"olga", "superuser", "own permission"})
