from datetime import datetime
from zoneinfo import ZoneInfo

from crm.models import Activity, Notification
from nurture import tasks
from nurture.models import Enrollment, OutboundMessage

MSK = ZoneInfo("Europe/Moscow")


def test_moving_a_lead_to_nurturing_enrolls_it_with_the_first_send_three_working_days_later(
    clock, nurtured_lead
):
    enrollment = nurtured_lead.enrollments.get()

    assert enrollment.state == Enrollment.State.ACTIVE
    # Thu 20 Nov 19:30 -> Fri, Mon, Tue -> Tue 25 Nov 19:30 is after the window -> Wed 10:00.
    assert enrollment.next_send_at == datetime(2025, 11, 26, 10, 0, tzinfo=MSK)


def test_the_first_email_goes_from_the_manager_to_the_lead_by_name(
    clock,
    nurtured_lead,
    smtp_server,
    eager_tasks,
    alice,
    django_capture_on_commit_callbacks,
):
    clock.move_to(datetime(2025, 11, 26, 10, 0, tzinfo=MSK))

    with django_capture_on_commit_callbacks(execute=True):
        dispatched = tasks.dispatch_due()  # as beat runs it

    [email] = smtp_server.handler.wait_for(1)
    assert dispatched == 1
    assert email.rcpt_tos == ["ivan@client.example"]
    assert email["From"] == "Alice Manager <alice@crm.example>"
    assert email["Reply-To"] == "Alice Manager <alice@crm.example>"
    assert email["Subject"] == "Проект «Shop»"
    assert "Ivan, добрый день!" in email.text
    assert "Принято ли решение по проекту «Shop»?" in email.text
    assert "Best regards,\nAlice" in email.text
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (
        email["List-Unsubscribe"].strip().startswith("<http://127.0.0.1:8000/nurture/unsubscribe/")
    )
    message = OutboundMessage.objects.get()
    assert message.state == OutboundMessage.State.SENT
    assert email["Message-ID"] == message.message_id
    assert Notification.objects.get(user=alice).message == "Email 1 of 6 sent to Ivan Petrov."
    assert nurtured_lead.activities.filter(kind=Activity.Kind.EMAIL_OUT).count() == 1
