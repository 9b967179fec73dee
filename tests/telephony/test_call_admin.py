import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from crm.models import Activity, LeadStatus, Notification
from nurture.models import Enrollment
from telephony.models import Call, RejectedPayload
from tests.telephony.conftest import T0, call_event

CHANGELIST = reverse("admin:telephony_call_changelist")
REPORT = reverse("admin:telephony_call_report")
MONDAY = {"date_from": "2025-11-24", "date_to": "2025-11-24"}


def make_call(call_id, *, agent=None, lead=None, direction="in", talk=None, **fields):
    """A finished call as the PBX left it, written directly."""
    answered = T0 + timedelta(seconds=5) if talk is not None else None
    ended = (answered or T0) + timedelta(seconds=talk or 20)
    return Call.objects.create(
        source="pbx",
        call_id=call_id,
        direction=direction,
        agent=agent,
        lead=lead,
        state=Call.State.ENDED if talk is not None else Call.State.MISSED,
        started_at=T0,
        answered_at=answered,
        ended_at=ended,
        last_event_at=ended,
        duration=int((ended - T0).total_seconds()),
        talk_time=talk,
        **fields,
    )


def page(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def shared_number(make_lead, alice, django_capture_on_commit_callbacks):
    """Two of alice's leads with one number; the first is being nurtured."""
    from crm import services

    first = make_lead(alice, phone_raw="+79161234567", email="a@x.example", title="Shop")
    second = make_lead(alice, phone_raw="8 916 123-45-67", email="b@x.example", title="Bakery")
    with django_capture_on_commit_callbacks(execute=True):
        services.change_status(first, LeadStatus.NURTURING, by=alice)
    return first, second


# --- The call log ---------------------------------------------------------------------------


def test_a_manager_sees_calls_of_her_leads_and_her_own_not_bobs(
    client, alice, bob, olga, make_lead
):
    lead = make_lead(alice, phone_raw="+79161111111")
    make_call("her-lead", lead=lead, from_raw="+7 916 111-11-11")
    make_call("she-took", agent=alice, from_raw="+7 916 222-22-22", talk=30)
    make_call("bobs", agent=bob, from_raw="+7 916 333-33-33", talk=40)
    client.force_login(alice)

    html = page(client, CHANGELIST)

    assert "+7 916 111-11-11" in html and "+7 916 222-22-22" in html
    assert "+7 916 333-33-33" not in html
    client.force_login(olga)
    assert "+7 916 333-33-33" in page(client, CHANGELIST)


def test_each_call_links_to_its_own_lead(client, alice, make_lead):
    leads = [make_lead(alice, email=f"{n}@x.example", title=f"Shop {n}") for n in range(3)]
    for number, lead in enumerate(leads):
        make_call(f"call-{number}", lead=lead)
    client.force_login(alice)

    html = page(client, CHANGELIST)

    for lead in leads:
        link = reverse("admin:crm_lead_change", args=[lead.pk])
        assert f'<a href="{link}">{lead}</a>' in html


def test_a_number_is_found_however_it_is_typed(client, olga):
    make_call("wanted", from_raw="+79161234567", from_e164="+79161234567")
    make_call("other", from_raw="+79165550000", from_e164="+79165550000")
    client.force_login(olga)

    html = page(client, CHANGELIST, q="8 (916) 123-45-67")

    assert "+79161234567" in html
    assert "+79165550000" not in html


def test_the_call_log_links_to_the_report(client, alice):
    client.force_login(alice)

    assert f'href="{REPORT}"' in page(client, CHANGELIST)


def test_a_call_page_shows_its_raw_events_and_cannot_be_changed(client, alice, calling_lead, apply):
    [_, call] = apply(
        call_event("call.ringing", raw={"vendor": "pbx-one"}),
        call_event("call.ended", seconds=20, raw={"vendor": "pbx-one", "cause": "no_answer"}),
    )
    client.force_login(alice)
    url = reverse("admin:telephony_call_change", args=[call.pk])

    html = page(client, url)

    assert "call.ringing" in html and "call.ended" in html
    assert "no_answer" in html
    assert 'name="_save"' not in html
    assert client.post(url, {"lead": calling_lead.pk}).status_code == 403


# --- Choosing the lead of a shared number ---------------------------------------------------


def test_alice_chooses_whose_call_it_was_and_it_lands_on_that_timeline(
    client, alice, shared_number, apply, django_capture_on_commit_callbacks
):
    first, second = shared_number
    [call] = apply(call_event("call.ringing"))
    assert (call.lead, set(call.candidate_leads.all())) == (None, {first, second})
    client.force_login(alice)
    url = reverse("admin:telephony_call_change", args=[call.pk])
    html = page(client, url)
    assert 'name="lead"' in html and "Shop" in html and "Bakery" in html

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"lead": first.pk, "_save": "Save"})

    assert response.status_code == 302
    call.refresh_from_db()
    assert call.lead == first
    entry = first.activities.get(kind=Activity.Kind.CALL)
    assert (call.activity, entry.payload["call"]) == (entry, call.pk)
    first.refresh_from_db()
    assert first.status.code == LeadStatus.IN_PROGRESS
    assert first.enrollments.get().halt_reason == Enrollment.HaltReason.CALL
    assert Notification.objects.filter(user=alice, lead=first, message__contains="called").exists()
    assert not second.activities.filter(kind=Activity.Kind.CALL).exists()
    assert 'name="_save"' not in page(client, url)  # settled: view only from now on


def test_only_a_possible_lead_can_be_chosen(client, alice, shared_number, make_lead, apply):
    stranger = make_lead(alice, phone_raw="+79169999999", email="s@x.example")
    [call] = apply(call_event("call.ringing"))
    client.force_login(alice)

    response = client.post(
        reverse("admin:telephony_call_change", args=[call.pk]), {"lead": stranger.pk}
    )

    assert response.status_code == 404  # the page never offers it
    call.refresh_from_db()
    assert call.lead is None


def test_bob_cannot_settle_a_call_on_alices_leads(client, bob, shared_number, apply):
    first, _ = shared_number
    [call] = apply(call_event("call.ringing", extension="202"))  # it rang on Bob's phone
    client.force_login(bob)
    url = reverse("admin:telephony_call_change", args=[call.pk])

    assert 'name="lead"' not in page(client, url)
    assert client.post(url, {"lead": first.pk}).status_code == 403
    call.refresh_from_db()
    assert call.lead is None


# --- Audit ----------------------------------------------------------------------------------


def test_events_and_rejected_payloads_are_read_only(client, olga, calling_lead, apply):
    apply(call_event("call.ringing"))
    rejected = RejectedPayload.objects.create(
        source="webhook", error="type: unknown event type", body='{"type": "x"}'
    )
    client.force_login(olga)

    assert "call.ringing" in page(client, reverse("admin:telephony_callevent_changelist"))
    html = page(client, reverse("admin:telephony_rejectedpayload_change", args=[rejected.pk]))
    assert "type: unknown event type" in html and "{&quot;type&quot;: &quot;x&quot;}" in html
    assert 'name="_save"' not in html
    assert client.get(reverse("admin:telephony_rejectedpayload_add")).status_code == 403
    assert client.get(reverse("admin:telephony_callevent_add")).status_code == 403


def test_managers_do_not_see_rejected_payloads(client, alice):
    client.force_login(alice)

    assert client.get(reverse("admin:telephony_rejectedpayload_changelist")).status_code == 403


def test_the_groups_have_their_telephony_permissions(db):
    def codenames(group):
        permissions = Group.objects.get(name=group).permissions
        return set(
            permissions.filter(content_type__app_label="telephony").values_list(
                "codename", flat=True
            )
        )

    assert codenames("Managers") == {
        "view_call",
        "view_callevent",
        "view_agentstate",
        "view_inboundemail",
        "view_inboundcontact",
        "change_call",
        "change_agentstate",
        "change_inboundemail",
    }
    assert {"delete_call", "view_rejectedpayload", "change_mailboxcursor"} <= codenames(
        "Supervisors"
    )


# --- The report -----------------------------------------------------------------------------


@pytest.fixture
def monday_calls(alice, bob):
    make_call("a1", agent=alice, talk=60)
    make_call("a2", agent=alice)  # missed
    make_call("a3", agent=alice, direction="out", talk=120)
    make_call("b1", agent=bob, talk=90)


def test_the_report_page_shows_each_managers_numbers_and_a_csv_link(client, olga, monday_calls):
    client.force_login(olga)

    html = page(client, REPORT, **MONDAY)

    assert "Alice Manager" in html and "Bob Manager" in html
    assert '<td class="number">50.0</td>' in html  # alice answered one of two inbound calls
    assert '<td class="number">180</td>' in html  # her talk time
    assert "format=csv" in html and "Download CSV" in html


def test_the_csv_download_is_the_report(client, olga, monday_calls):
    client.force_login(olga)

    response = client.get(REPORT, {**MONDAY, "format": "csv"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    assert response.content.startswith("\ufeff".encode())  # UTF-8 to Excel
    text = response.content.decode("utf-8-sig")
    header, *rows = csv.reader(io.StringIO(text), delimiter=";")
    assert header[:3] == ["Day", "Manager", "Inbound"]
    assert rows == [  # whole numbers: no decimal point for a Russian Excel to misread
        ["2025-11-24", "Alice Manager", "2", "1", "1", "1", "50", "90", "180"],
        ["2025-11-24", "Bob Manager", "1", "0", "0", "1", "100", "90", "90"],
    ]


def test_a_manager_gets_only_her_own_row_and_cannot_pick_bob(client, alice, bob, monday_calls):
    client.force_login(alice)

    html = page(client, REPORT, **MONDAY)
    refused = client.get(REPORT, {**MONDAY, "manager": bob.pk})
    csv_rows = list(
        csv.reader(
            io.StringIO(
                client.get(REPORT, {**MONDAY, "format": "csv"}).content.decode("utf-8-sig")
            ),
            delimiter=";",
        )
    )

    assert "Alice Manager" in html and "Bob Manager" not in html
    assert refused.status_code == 404  # bob is not hers to choose: as if he did not exist
    assert [row[1] for row in csv_rows[1:]] == ["Alice Manager"]


def test_a_backwards_date_range_is_explained(client, olga):
    client.force_login(olga)

    html = page(client, REPORT, date_from="2025-11-25", date_to="2025-11-24")

    assert "The first day is after the last one." in html
