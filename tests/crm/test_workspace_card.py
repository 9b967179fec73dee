"""The lead card: the timeline, notes, status buttons, the edit and new forms, duplicates,
and the panels nurture and telephony add."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from crm import services
from crm.models import Activity, Lead, Notification

pytestmark = pytest.mark.django_db


def test_the_timeline_shows_newest_first_with_notes_and_reasons(alices_client, alice, make_lead):
    lead = make_lead(alice)
    alices_client.post(
        reverse("crm:lead_note", args=[lead.pk]), {"text": "Wants a quote by Friday"}
    )
    alices_client.post(
        reverse("crm:lead_status", args=[lead.pk]), {"status": "in_progress", "reason": "called"}
    )

    page = alices_client.get(reverse("crm:lead_detail", args=[lead.pk])).content.decode()

    assert (
        page.index("In progress")
        < page.index("Wants a quote by Friday")
        < page.index("Lead created")
    )
    assert "Reason: called" in page


@pytest.mark.parametrize(
    "kind, payload, shown, hidden",
    [
        (
            Activity.Kind.EMAIL_IN,
            {"subject": "Re: prices", "excerpt": "Send the offer"},
            ["Re: prices", "Send the offer"],
            [],
        ),
        (Activity.Kind.EMAIL_OUT, {"subject": "Our offer"}, ["Our offer"], []),
        (
            Activity.Kind.REASSIGNED,
            {"to_name": "Bob Baker", "subject": "stray"},
            ["Now with Bob Baker"],
            ["stray"],
        ),
        (
            Activity.Kind.TASK,
            {"title": "Call back", "assigned_to_name": "Alice"},
            ["Call back · Alice"],
            [],
        ),
        (Activity.Kind.CALL, {"state": "missed", "talk_time": 30}, ["Missed"], ["Talked"]),
        (Activity.Kind.CALL, {"state": "answered", "talk_time": 30}, ["Talked 30 s"], ["Missed"]),
        (
            Activity.Kind.STATUS_CHANGE,
            {"from": "new", "to": "won", "reason": "signed"},
            ["Reason: signed"],
            [],
        ),
    ],
)
def test_each_kind_of_entry_shows_what_its_payload_says(
    alices_client, alice, make_lead, kind, payload, shown, hidden
):
    lead = make_lead(alice)
    Activity.objects.create(lead=lead, kind=kind, summary="Something happened", payload=payload)

    page = alices_client.get(reverse("crm:lead_detail", args=[lead.pk])).content.decode()

    assert all(text in page for text in shown), shown
    assert not any(text in page for text in hidden), hidden


def test_a_note_through_htmx_answers_the_timeline_fragment(alices_client, alice, make_lead):
    lead = make_lead(alice)

    answer = alices_client.post(
        reverse("crm:lead_note", args=[lead.pk]),
        {"text": "Send prices"},
        headers={"HX-Request": "true"},
    )

    assert answer.status_code == 200
    assert "<html" not in answer.content.decode() and "Send prices" in answer.content.decode()
    note = lead.activities.get(kind=Activity.Kind.NOTE)
    assert note.actor == alice and note.summary == "Send prices"


def test_an_empty_note_is_refused_and_nothing_is_written(alices_client, alice, make_lead):
    lead = make_lead(alice)

    answer = alices_client.post(reverse("crm:lead_note", args=[lead.pk]), {"text": ""})

    assert answer.status_code == 400
    assert not lead.activities.filter(kind=Activity.Kind.NOTE).exists()


def test_an_unknown_status_is_a_400_and_the_status_stays(alices_client, alice, make_lead):
    lead = make_lead(alice)

    answer = alices_client.post(reverse("crm:lead_status", args=[lead.pk]), {"status": "gone"})

    assert answer.status_code == 400
    lead.refresh_from_db()
    assert lead.status.code == "new"


def test_moving_to_nurturing_shows_the_planned_emails_on_the_card(
    alices_client, alice, make_lead, django_capture_on_commit_callbacks
):
    lead = make_lead(alice)
    with django_capture_on_commit_callbacks(execute=True):
        alices_client.post(reverse("crm:lead_status", args=[lead.pk]), {"status": "nurturing"})

    page = alices_client.get(reverse("crm:lead_detail", args=[lead.pk])).content.decode()

    assert "Email 1 of 6 goes on" in page
    assert page.count("(planned)") == 6
    assert "Stop nurturing" in page


def test_a_new_lead_with_a_colleagues_email_is_shown_the_other_lead_before_saving(
    alices_client, alice, bob, make_lead
):
    bobs = make_lead(bob, first_name="Boris", email="boris@client.example")

    first = alices_client.post(
        reverse("crm:lead_new"), {"title": "Bakery site", "email": "Boris@Client.example"}
    )

    assert first.status_code == 400
    page = first.content.decode()
    assert "Another lead has this email or phone" in page and "manager Bob" in page
    assert "Boris" not in page.split("Another lead has")[1].split("</section>")[0]
    assert Lead.objects.count() == 1

    saved = alices_client.post(
        reverse("crm:lead_new"),
        {"title": "Bakery site", "email": "boris@client.example", "save_anyway": "on"},
    )

    assert saved.status_code == 302
    mine = Lead.objects.exclude(pk=bobs.pk).get()
    assert mine.responsible == alice
    told = Notification.objects.get(user=bob)
    assert told.lead == bobs and "Alice" in told.message


def test_a_duplicate_phone_is_found_however_it_was_typed(alices_client, alice, make_lead):
    make_lead(alice, email="", phone_raw="+7 916 123-45-67")

    answer = alices_client.post(
        reverse("crm:lead_new"), {"title": "Second", "phone_raw": "8 (916) 1234567"}
    )

    assert (
        answer.status_code == 400
        and "Another lead has this email or phone" in answer.content.decode()
    )


def test_a_manager_cannot_make_a_colleague_responsible_by_form_field(
    alices_client, alice, bob, make_lead
):
    lead = make_lead(alice)

    alices_client.post(
        reverse("crm:lead_edit", args=[lead.pk]),
        {"title": "Renamed", "email": lead.email, "responsible": bob.pk},
    )

    lead.refresh_from_db()
    assert lead.title == "Renamed" and lead.responsible == alice


def test_an_invalid_edit_is_kept_on_the_form_and_not_half_saved(alices_client, alice, make_lead):
    lead = make_lead(alice, title="Before")

    answer = alices_client.post(
        reverse("crm:lead_edit", args=[lead.pk]),
        {"title": "After", "email": "not an email", "time_zone": "Mars/Olympus"},
    )

    assert answer.status_code == 400
    assert 'value="After"' in answer.content.decode()
    lead.refresh_from_db()
    assert lead.title == "Before"


def test_a_supervisor_reassigns_on_the_edit_form_with_a_timeline_entry(
    client, olga, alice, bob, make_lead
):
    lead = make_lead(alice)
    client.force_login(olga)

    client.post(
        reverse("crm:lead_edit", args=[lead.pk]),
        {"title": lead.title, "email": lead.email, "responsible": bob.pk},
    )

    lead.refresh_from_db()
    assert lead.responsible == bob
    assert lead.activities.filter(kind=Activity.Kind.REASSIGNED, actor=olga).exists()


def test_a_supervisor_cannot_leave_a_lead_without_its_manager_on_the_edit_form(
    client, olga, alice, make_lead
):
    lead = make_lead(alice)
    unassigned = make_lead(None, email="nobodys@example.com")
    client.force_login(olga)
    url = reverse("crm:lead_edit", args=[lead.pk])

    form = client.get(url).content.decode()
    emptied = client.post(url, {"title": "Renamed", "email": lead.email, "responsible": ""})
    open_one = client.get(reverse("crm:lead_edit", args=[unassigned.pk])).content.decode()

    assert "Nobody" not in form and "Nobody" in open_one
    assert emptied.status_code == 400
    lead.refresh_from_db()
    assert lead.responsible == alice and lead.title != "Renamed"


def test_a_reassigned_lead_takes_its_managers_open_tasks_along(client, olga, alice, bob, make_lead):
    lead = make_lead(alice)
    tomorrow = timezone.now() + timedelta(days=1)
    open_task = services.create_task(lead, "Call back", tomorrow, alice, by=alice)
    olgas_task = services.create_task(lead, "Check the offer", tomorrow, olga, by=olga)
    client.force_login(olga)

    client.post(
        reverse("crm:lead_edit", args=[lead.pk]),
        {"title": lead.title, "email": lead.email, "responsible": bob.pk},
    )

    open_task.refresh_from_db(), olgas_task.refresh_from_db()
    assert open_task.assigned_to == bob and olgas_task.assigned_to == olga


def test_an_edit_that_keeps_a_shared_email_is_not_stopped_again(
    alices_client, alice, bob, make_lead
):
    make_lead(bob, email="shared@client.example")
    mine = make_lead(alice, email="shared@client.example", title="Before")

    answer = alices_client.post(
        reverse("crm:lead_edit", args=[mine.pk]), {"title": "After", "email": mine.email}
    )

    assert answer.status_code == 302
    mine.refresh_from_db()
    assert mine.title == "After" and not Notification.objects.filter(user=bob).exists()


def test_stopping_nurturing_from_the_card(
    alices_client, alice, make_lead, django_capture_on_commit_callbacks
):
    lead = make_lead(alice)
    with django_capture_on_commit_callbacks(execute=True):
        alices_client.post(reverse("crm:lead_status", args=[lead.pk]), {"status": "nurturing"})
    enrollment = lead.enrollments.get()

    alices_client.post(reverse("nurture:stop", args=[enrollment.pk]))

    enrollment.refresh_from_db()
    assert enrollment.state == "halted" and enrollment.halt_reason == "manual"


def test_an_email_sent_shows_its_text_on_the_timeline(
    client,
    clock,
    nurtured_lead,
    smtp_server,
    eager_tasks,
    alice,
    django_capture_on_commit_callbacks,
):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from nurture import tasks

    clock.move_to(datetime(2025, 11, 26, 10, 0, tzinfo=ZoneInfo("Europe/Moscow")))
    with django_capture_on_commit_callbacks(execute=True):
        tasks.dispatch_due()
    smtp_server.handler.wait_for(1)
    client.force_login(alice)

    page = client.get(reverse("crm:lead_detail", args=[nurtured_lead.pk])).content.decode()

    timeline = page.split('id="timeline"')[1]
    assert "Проект «Shop»" in timeline and "Ivan, добрый день!" in timeline


def test_a_call_shows_its_recording_on_the_timeline(alices_client, alice, make_lead):
    from telephony.models import Call

    lead = make_lead(alice, phone_raw="+7 916 111-22-33")
    activity = Activity.objects.create(
        lead=lead, kind=Activity.Kind.CALL, summary="Incoming call", payload={}
    )
    call = Call.objects.create(
        source="pbx",
        call_id="c-1",
        direction=Call.Direction.INBOUND,
        state=Call.State.ENDED,
        started_at=activity.created_at,
        last_event_at=activity.created_at,
        lead=lead,
        recording_url="https://pbx.example/rec/c-1.mp3",
    )
    Activity.objects.filter(pk=activity.pk).update(payload={"call": call.pk, "state": "ended"})

    page = alices_client.get(reverse("crm:lead_detail", args=[lead.pk])).content.decode()

    assert 'href="https://pbx.example/rec/c-1.mp3"' in page.split('id="timeline"')[1]


def test_older_entries_follow_the_timeline_order_even_when_written_late(
    alices_client, alice, make_lead
):
    from datetime import timedelta

    from django.utils import timezone

    from crm.services import record_activity

    lead = make_lead(alice)
    now = timezone.now()
    for number in range(55):
        record_activity(lead, Activity.Kind.NOTE, f"note {number}", actor=alice, at=now)
    # A letter recorded last but sent before everything else: the oldest entry, the newest id.
    record_activity(lead, Activity.Kind.NOTE, "written late", at=now - timedelta(days=1))

    first = alices_client.get(reverse("crm:lead_detail", args=[lead.pk])).content.decode()
    last_shown = first.split('id="activity-')[50].split('"')[0]
    older = alices_client.get(
        reverse("crm:lead_detail", args=[lead.pk]),
        {"before": last_shown},
        headers={"HX-Request": "true"},
    ).content.decode()

    shown_first = {part.split('"')[0] for part in first.split('id="activity-')[1:]}
    shown_older = {part.split('"')[0] for part in older.split('id="activity-')[1:]}
    everything = {str(pk) for pk in lead.activities.values_list("pk", flat=True)}
    assert len(shown_first) == 50 and not shown_first & shown_older
    assert shown_first | shown_older == everything
    assert "written late" in older


def test_the_edit_form_shows_a_leads_source_to_type_and_its_language_to_choose(
    alices_client, alice, make_lead
):
    lead = make_lead(alice, source="Exhibition")

    form = alices_client.get(reverse("crm:lead_edit", args=[lead.pk])).content.decode()

    assert '<input type="text" name="source" value="Exhibition"' in form
    assert '<select name="language"' in form and 'value="ru"' in form
