"""Login lockout (django-axes): too many wrong passwords for one user from one address lock that
user out there, with a clear page, until the cool-off passes or an admin lifts it; and no
password is set, by an admin or by its user, without the password validators."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

LOGIN = reverse("admin:login")
LOCKED = 429  # Too Many Requests
User = get_user_model()


def log_in(client, username, password, **headers):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, **headers
    )


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def lock_out(client, username="alice", **headers):
    """Wrong passwords until the lockout answers (the fifth does: LOGIN_FAILURE_LIMIT)."""
    answers = [log_in(client, username, f"guess {n}", **headers).status_code for n in range(5)]
    assert answers == [200, 200, 200, 200, LOCKED]


@pytest.fixture
def root(make_user):
    """An administrator (superuser)."""
    return make_user("root", is_superuser=True)


def test_fifty_wrong_passwords_and_then_the_right_one_does_not_log_in(client, alice):
    answers = [log_in(client, "alice", f"guess {n}").status_code for n in range(50)]

    right_password = log_in(client, "alice", "pw")

    assert answers[:4] == [200] * 4  # the login form again, with its error
    assert set(answers[4:]) == {LOCKED}
    assert right_password.status_code == LOCKED
    assert not logged_in(client)
    alice.refresh_from_db()
    assert alice.last_login is None


def test_the_locked_out_user_is_told_when_to_try_again(client, alice):
    lock_out(client)

    answer = log_in(client, "alice", "pw")

    page = answer.content.decode()
    assert answer.status_code == LOCKED
    assert answer["Retry-After"] == str(30 * 60)
    assert "<h1>Login locked</h1>" in page
    assert "Account locked: too many login attempts. Please try again later." in page
    assert (
        "You can try again in 30 minutes, or ask an administrator to unlock your account." in page
    )
    assert answer["Content-Security-Policy"]


def test_the_lockout_page_speaks_russian(client, alice):
    lock_out(client, HTTP_ACCEPT_LANGUAGE="ru")

    answer = log_in(client, "alice", "pw", HTTP_ACCEPT_LANGUAGE="ru")

    page = answer.content.decode()
    assert answer.status_code == LOCKED
    assert '<html lang="ru"' in page
    assert "Учетная запись заблокирована: слишком много попыток входа." in page


def test_without_a_cool_off_only_an_admin_unlocks(client, alice, settings):
    settings.AXES_COOLOFF_TIME = None  # LOGIN_LOCKOUT_MINUTES=0
    lock_out(client)

    answer = log_in(client, "alice", "pw")

    assert answer.status_code == LOCKED
    assert "Retry-After" not in answer
    assert "Contact an admin to unlock your account." in answer.content.decode()


def test_below_the_limit_the_right_password_logs_in_and_the_count_starts_again(alice):
    for _ in range(2):
        client = Client()
        answers = [log_in(client, "alice", f"guess {n}").status_code for n in range(4)]

        right_password = log_in(client, "alice", "pw")

        assert answers == [200] * 4
        assert right_password.status_code == 302
        assert logged_in(client)


def test_only_that_user_from_that_address_is_locked_out(client, alice, bob):
    lock_out(client)
    bob_here, alice_elsewhere = Client(), Client(REMOTE_ADDR="198.51.100.2")

    assert log_in(bob_here, "bob", "pw").status_code == 302
    assert log_in(alice_elsewhere, "alice", "pw").status_code == 302
    assert logged_in(bob_here) and logged_in(alice_elsewhere)


def test_a_new_browser_or_a_forged_forwarded_for_does_not_escape_the_lockout(settings, alice):
    settings.TRUSTED_PROXY_COUNT = 1  # our nginx, 10.0.0.1, appends the address it saw
    attacker = Client(REMOTE_ADDR="10.0.0.1")
    answers = [
        log_in(
            attacker,
            "alice",
            f"guess {n}",
            HTTP_USER_AGENT=f"Browser {n}",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.7",  # the first entry is forged
        ).status_code
        for n in range(6)
    ]
    alice_at_work = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2")

    assert answers == [200, 200, 200, 200, LOCKED, LOCKED]
    assert log_in(alice_at_work, "alice", "pw").status_code == 302  # behind the same proxy


def test_the_lockout_ends_after_the_cool_off(client, alice, clock, clock_start):
    lock_out(client)
    clock.move_to(clock_start + timedelta(minutes=31))

    answer = log_in(client, "alice", "pw")

    assert answer.status_code == 302
    assert logged_in(client)


def test_an_admin_lifts_a_lockout_in_the_admin(client, alice, root):
    lock_out(client)
    admin = Client()
    admin.force_login(root)
    attempts = reverse("admin:axes_accessattempt_changelist")

    listed = admin.get(attempts)
    lifted = admin.post(
        attempts,
        {
            "action": "delete_selected",
            "_selected_action": list(AccessAttempt.objects.values_list("pk", flat=True)),
            "post": "yes",
        },
    )

    assert listed.status_code == 200 and "alice" in listed.content.decode()
    assert lifted.status_code == 302
    assert log_in(client, "alice", "pw").status_code == 302


def test_a_manager_cannot_lift_a_lockout(client, alice, bob):
    lock_out(client)
    bobs = Client()
    bobs.force_login(bob)

    answer = bobs.get(reverse("admin:axes_accessattempt_changelist"))

    assert answer.status_code == 403
    assert AccessAttempt.objects.filter(username="alice").exists()


def test_an_admin_lifts_a_lockout_from_the_command_line(client, alice):
    lock_out(client)

    call_command("axes_reset_username", "alice")

    assert log_in(client, "alice", "pw").status_code == 302


# --- The password validators, wherever a password is set ------------------------------------


@pytest.mark.parametrize(
    ("password", "refused_because"),
    [
        ("demo", "This password is too short. It must contain at least 8 characters."),
        ("password", "This password is too common."),
        ("73914862", "This password is entirely numeric."),
        ("newbie-crm", "The password is too similar to the username."),
    ],
)
def test_an_admin_cannot_give_a_new_user_a_weak_password(client, root, password, refused_because):
    client.force_login(root)

    answer = client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "newbie-crm",
            "usable_password": "true",
            "password1": password,
            "password2": password,
        },
    )

    assert answer.status_code == 200  # the form again
    assert refused_because in answer.content.decode()
    assert not User.objects.filter(username="newbie-crm").exists()


def test_an_admin_gives_a_new_user_a_strong_password(client, root):
    client.force_login(root)

    answer = client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "newbie",
            "usable_password": "true",
            "password1": "quiet otter 4 harbour",
            "password2": "quiet otter 4 harbour",
        },
    )

    assert answer.status_code == 302
    assert User.objects.get(username="newbie").check_password("quiet otter 4 harbour")


def test_an_admin_cannot_reset_a_users_password_to_a_weak_one(client, root, alice):
    client.force_login(root)

    answer = client.post(
        reverse("admin:auth_user_password_change", args=[alice.pk]),
        {"usable_password": "true", "password1": "12345678", "password2": "12345678"},
    )

    assert answer.status_code == 200
    assert "This password is too common." in answer.content.decode()
    alice.refresh_from_db()
    assert alice.check_password("pw")


def test_a_user_cannot_change_their_own_password_to_a_weak_one(client, alice):
    client.force_login(alice)

    answer = client.post(
        reverse("admin:password_change"),
        {"old_password": "pw", "new_password1": "alice123", "new_password2": "alice123"},
    )

    assert answer.status_code == 200
    assert "The password is too similar to the username." in answer.content.decode()
    alice.refresh_from_db()
    assert alice.check_password("pw")
