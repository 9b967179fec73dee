import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from crm.demo import DEMO_PASSWORD
from crm.models import Lead, LeadStatus

User = get_user_model()


@pytest.fixture
def development(settings):
    """`make run`'s environment: DEBUG on."""
    settings.DEBUG = True


def test_demo_data_loads_once_with_leads_in_every_status(db, development, capsys):
    call_command("load_demo")
    call_command("load_demo")

    assert Lead.objects.count() == 6
    assert set(Lead.objects.values_list("status__code", flat=True)) == set(
        LeadStatus.objects.values_list("code", flat=True)
    )
    assert User.objects.get(username="admin").check_password(DEMO_PASSWORD)
    output = capsys.readouterr().out
    assert "Demo data is already loaded." in output
    assert "login admin / demo" in output


def test_outside_development_load_demo_refuses_and_adds_nobody(db):
    with pytest.raises(CommandError, match=r"only in development \(DEBUG on\).*--force"):
        call_command("load_demo")

    assert not User.objects.exists()
    assert not Lead.objects.exists()


def test_forced_outside_development_the_demo_users_get_no_password(db, client, capsys):
    call_command("load_demo", force=True)

    assert Lead.objects.count() == 6
    assert User.objects.count() == 4
    assert not any(user.has_usable_password() for user in User.objects.all())
    logging_in = client.post(
        "/admin/login/", {"username": "admin", "password": DEMO_PASSWORD, "next": "/admin/"}
    )
    assert logging_in.status_code == 200  # the form again, with its error
    assert "_auth_user_id" not in client.session
    output = capsys.readouterr().out
    assert "login admin / demo" not in output
    assert "have no password: set one with `manage.py changepassword <username>`" in output


def test_forced_on_a_database_loaded_in_development_the_published_password_goes(
    db, settings, capsys
):
    settings.DEBUG = True
    call_command("load_demo")
    olga = User.objects.get(username="olga")
    olga.set_password("olgas own passphrase 2025")
    olga.save()

    settings.DEBUG = False
    call_command("load_demo", force=True)

    assert not User.objects.get(username="admin").has_usable_password()
    assert not User.objects.get(username="maria").check_password(DEMO_PASSWORD)
    assert User.objects.get(username="olga").check_password("olgas own passphrase 2025")
