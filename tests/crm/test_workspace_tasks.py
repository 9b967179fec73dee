"""Next steps (tasks), the user's own language and time zone, notifications in the reader's
language."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from crm import services
from crm.models import Activity, Notification, Profile, Task

pytestmark = pytest.mark.django_db


def test_a_task_is_set_from_the_card_in_one_click_and_shown_on_today(
    alices_client, alice, make_lead, clock
):
    lead = make_lead(alice, first_name="Anna", last_name="Client")

    alices_client.post(
        reverse("crm:lead_task", args=[lead.pk]), {"title": "Call back", "when": "tomorrow"}
    )

    task = Task.objects.get()
    local_due = timezone.localtime(task.due_at)
    assert (task.assigned_to, task.title, local_due.hour) == (alice, "Call back", 10)
    assert local_due.date() == timezone.localdate() + timedelta(days=1)
    assert lead.activities.filter(kind=Activity.Kind.TASK).exists()
    today = alices_client.get(reverse("crm:today")).content.decode()
    assert "Upcoming" in today and "Anna Client" in today.split("My next steps")[1]


def test_overdue_today_and_upcoming_tasks_are_apart_on_today(
    alices_client, alice, make_lead, clock
):
    lead = make_lead(alice)
    now = timezone.now()
    for title, due in [("Late one", now - timedelta(hours=2)), ("Later", now + timedelta(days=2))]:
        services.create_task(lead, title, due, alice, by=alice)

    page = alices_client.get(reverse("crm:today")).content.decode()

    assert (
        page.index("Overdue")
        < page.index("Late one")
        < page.index("Upcoming")
        < page.index("Later")
    )


def test_a_backlog_of_overdue_tasks_leaves_todays_and_upcoming_on_today(
    alices_client, alice, make_lead, clock
):
    lead = make_lead(alice)
    now = timezone.now()  # 19:30 in Moscow
    Task.objects.bulk_create(
        Task(lead=lead, title=f"Old {n}", due_at=now - timedelta(days=n + 1), assigned_to=alice)
        for n in range(40)
    )
    services.create_task(lead, "Tonight", now + timedelta(hours=2), alice, by=alice)
    services.create_task(lead, "Next week", now + timedelta(days=7), alice, by=alice)

    page = alices_client.get(reverse("crm:today")).content.decode()

    assert page.count('<li class="task overdue">') == 10  # the ten longest overdue
    assert page.index("Old 39") < page.index("Tonight") < page.index("Next week")


def test_completing_a_task_is_a_timeline_entry_and_the_lead_has_no_next_step(
    alices_client, alice, make_lead
):
    lead = make_lead(alice, first_name="Anna", last_name="Client")
    task = services.create_task(lead, "Send the offer", timezone.now(), alice, by=alice)
    assert "no next step" not in alices_client.get(reverse("crm:lead_list")).content.decode()

    alices_client.post(reverse("crm:task_done", args=[task.pk]))

    task.refresh_from_db()
    assert task.done_at is not None and task.done_by == alice
    done = lead.activities.filter(kind=Activity.Kind.TASK, payload__done=True).get()
    assert done.payload["title"] == "Send the offer"
    listed = alices_client.get(reverse("crm:lead_list"), {"no_next_step": "on"}).content.decode()
    assert "Anna Client" in listed and "no next step" in listed


def test_a_task_without_a_time_is_refused_and_nothing_is_written(alices_client, alice, make_lead):
    lead = make_lead(alice)

    answer = alices_client.post(reverse("crm:lead_task", args=[lead.pk]), {"title": "Call"})

    assert answer.status_code == 400
    assert not Task.objects.exists()


def test_a_manager_cannot_assign_a_task_to_a_colleague(alices_client, alice, bob, make_lead):
    lead = make_lead(alice)

    alices_client.post(
        reverse("crm:lead_task", args=[lead.pk]),
        {"title": "Call", "when": "today", "assigned_to": bob.pk},
    )

    assert Task.objects.get().assigned_to == alice


def test_the_language_switch_is_kept_per_user(client, alice):
    client.force_login(alice)

    client.post(reverse("set_user_language"), {"language": "ru", "next": "/leads/"})

    assert Profile.objects.get(user=alice).language == "ru"
    client.logout()
    client.force_login(alice)
    assert "Мои лиды" in client.get(reverse("crm:lead_list")).content.decode()


@pytest.mark.parametrize(
    "back, lands", [("/leads/?q=x", "/leads/?q=x"), ("https://evil.example/", "/")]
)
def test_the_language_switch_goes_back_to_the_page_and_never_off_site(client, back, lands):
    answer = client.post(reverse("set_user_language"), {"language": "ru", "next": back})

    assert answer.status_code == 302 and answer.url == lands
    assert answer.cookies["django_language"].value == "ru"


def test_an_unknown_language_is_a_400(alices_client):
    assert alices_client.post(reverse("set_user_language"), {"language": "xx"}).status_code == 400


def test_times_are_shown_in_the_users_own_time_zone(client, alice, make_lead):
    Profile.objects.filter(user=alice).update(time_zone="Asia/Yekaterinburg")
    lead = make_lead(alice)
    services.create_task(
        lead,
        "Call",
        timezone.now().replace(hour=7, minute=0, second=0, microsecond=0),
        alice,
        by=alice,
    )
    client.force_login(alice)

    page = client.get(reverse("crm:lead_detail", args=[lead.pk])).content.decode()

    assert "12:00" in page.split("Next steps")[1]


def test_a_notification_reads_in_the_readers_language(alice, make_lead):
    lead = make_lead(alice, first_name="Anna", last_name="Client")
    services.notify(
        alice,
        "Email %(number)d of %(total)d sent to %(lead)s.",
        {"number": 2, "total": 6, "lead": lead.display_name},
        lead=lead,
    )
    notification = Notification.objects.get()

    with translation.override("en"):
        english = notification.text
    with translation.override("ru"):
        russian = notification.text

    assert english == "Email 2 of 6 sent to Anna Client."
    assert russian.startswith("Письмо 2 из 6") and "Anna Client" in russian


def test_the_unread_count_reads_in_russian_plural_forms(client, alice):
    Profile.objects.filter(user=alice).update(language="ru")
    for number in range(3):
        services.notify(alice, "Something happened %(number)d", {"number": number})
    client.force_login(alice)

    page = client.get(reverse("crm:lead_list"))

    assert page.status_code == 200
    assert "3 непрочитанных" in page.content.decode()
