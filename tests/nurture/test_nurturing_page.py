"""The workspace's nurturing page: active and finished enrollments, and which email works."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from crm import services as crm_services
from crm.models import Activity, StatusChangeCause
from nurture import selectors
from nurture.models import Enrollment, OutboundMessage, Sequence

pytestmark = pytest.mark.django_db

MSK = ZoneInfo("Europe/Moscow")
MONDAY = datetime(2025, 11, 17, 10, 0, tzinfo=MSK)
HALTED, COMPLETED, ACTIVE = (
    Enrollment.State.HALTED,
    Enrollment.State.COMPLETED,
    Enrollment.State.ACTIVE,
)


@pytest.fixture
def clock_start():
    return datetime(2025, 11, 20, 12, 0, tzinfo=MSK)


@pytest.fixture
def sequence(db):
    return Sequence.objects.get(name="Дожимаем лида / Lead nurturing")


@pytest.fixture
def enroll(make_lead, sequence):
    """An enrollment of a new lead of `manager`'s in `sequence`, with `sent` emails sent and
    `cancelled` more dispatched but cancelled."""
    made = []

    def make(manager, state=ACTIVE, *, sent=0, cancelled=0, reason="", lead=None, **fields):
        number = len(made)
        lead = lead or make_lead(
            manager, first_name=f"Lead{number}", email=f"lead{number}@client.example"
        )
        ended = MONDAY + timedelta(days=3) if state != ACTIVE else None
        enrollment = Enrollment.objects.create(
            lead=lead,
            sequence=fields.pop("in_sequence", sequence),
            state=state,
            sent_count=sent + cancelled,
            halt_reason=reason,
            enrolled_at=fields.pop("enrolled_at", MONDAY),
            ended_at=fields.pop("ended_at", ended),
            **fields,
        )
        for step in range(1, sent + cancelled + 1):
            OutboundMessage.objects.create(
                enrollment=enrollment,
                number=step,
                sender=manager,
                scheduled_for=MONDAY,
                created_at=MONDAY,
                state=OutboundMessage.State.SENT if step <= sent else "cancelled",
                sent_at=MONDAY if step <= sent else None,
            )
        made.append(enrollment)
        return enrollment

    return make


def signed_in(client, user):
    client.force_login(user)
    return client


def html(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


# --- Active and finished --------------------------------------------------------------------


def test_a_manager_sees_her_leads_being_nurtured_with_their_step_and_next_email(
    client, clock, alice, bob, enroll
):
    mine = enroll(alice, sent=2, next_send_at=datetime(2025, 11, 24, 10, 0, tzinfo=MSK))
    enroll(bob, sent=1, next_send_at=datetime(2025, 11, 21, 10, 0, tzinfo=MSK))

    page = html(signed_in(client, alice).get(reverse("nurturing:overview")))

    assert mine.lead.display_name in page
    assert "Email 2 of 6 sent, next on Mon, 24 Nov, 10:00" in page
    assert "Mon 24 Nov 10:00" in page  # the lead's time is hers: shown once
    assert "Lead1" not in page
    assert "Manager</th>" not in page  # her own leads only: no manager column


def test_the_next_email_is_shown_at_the_leads_time_and_the_viewers(
    client, clock, alice, enroll, make_lead
):
    far = make_lead(alice, first_name="Far", email="far@client.example", time_zone="Asia/Tokyo")
    enroll(
        alice, lead=far, next_send_at=datetime(2025, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    )

    page = html(signed_in(client, alice).get(reverse("nurturing:overview")))

    assert "Mon 24 Nov 10:00 at the lead’s, 04:00 yours" in page


def test_the_soonest_send_comes_first(client, clock, alice, enroll):
    enroll(alice, next_send_at=datetime(2025, 11, 25, 10, 0, tzinfo=MSK))
    enroll(alice, next_send_at=datetime(2025, 11, 21, 10, 0, tzinfo=MSK))

    page = html(signed_in(client, alice).get(reverse("nurturing:overview")))

    assert page.index("Lead1") < page.index("Lead0")


def test_finished_enrollments_say_how_and_when_they_ended(client, clock, alice, enroll):
    enroll(alice, COMPLETED, sent=6)
    enroll(
        alice, HALTED, sent=2, reason="reply", ended_at=datetime(2025, 11, 19, 15, 5, tzinfo=MSK)
    )
    enroll(alice, next_send_at=MONDAY + timedelta(days=9))  # still active: not listed

    page = html(signed_in(client, alice).get(reverse("nurturing:overview"), {"state": "finished"}))

    assert "All emails sent" in page and "6 of 6" in page
    assert "Stopped: lead replied" in page and "2 of 6" in page
    assert "Wed 19 Nov 2025 15:05" in page
    assert "Lead2" not in page
    assert page.index("Lead0") < page.index("Lead1")  # the newest end first


def test_finished_ones_filter_by_outcome_and_sequence(client, clock, alice, enroll, sequence):
    other = Sequence.objects.create(name="Winter offer", enrolling_status=sequence.enrolling_status)
    enroll(alice, COMPLETED, sent=6)
    enroll(alice, HALTED, sent=1, reason="call")
    enroll(alice, HALTED, sent=1, reason="call", in_sequence=other)
    alices = signed_in(client, alice)

    stopped = html(alices.get(reverse("nurturing:overview"), {"state": "halted"}))
    in_other = html(
        alices.get(reverse("nurturing:overview"), {"state": "finished", "sequence": other.pk})
    )

    assert "Lead1" in stopped and "Lead2" in stopped and "Lead0" not in stopped
    assert "Lead2" in in_other and "Lead0" not in in_other and "Lead1" not in in_other


def test_a_supervisor_sees_everyones_with_their_manager_and_filters_by_manager(
    client, clock, olga, alice, bob, enroll
):
    enroll(alice, next_send_at=MONDAY + timedelta(days=7))
    enroll(bob, next_send_at=MONDAY + timedelta(days=7))
    olgas = signed_in(client, olga)

    everyone = html(olgas.get(reverse("nurturing:overview")))
    bobs = html(olgas.get(reverse("nurturing:overview"), {"manager": bob.pk}))

    assert "Lead0" in everyone and "Lead1" in everyone and "Alice Manager" in everyone
    assert "Lead1" in bobs and "Lead0" not in bobs


def test_a_manager_cannot_filter_by_a_colleague_and_still_sees_only_her_own(
    client, clock, alice, bob, enroll
):
    enroll(bob, next_send_at=MONDAY + timedelta(days=7))

    page = html(signed_in(client, alice).get(reverse("nurturing:overview"), {"manager": bob.pk}))

    assert "Lead0" not in page


def test_bad_filters_answer_400_and_show_nothing(client, clock, alice, enroll):
    enroll(alice, next_send_at=MONDAY + timedelta(days=7))
    alices = signed_in(client, alice)

    for query in ({"state": "nope"}, {"sequence": "999999"}, {"sequence": "x"}):
        answer = alices.get(reverse("nurturing:overview"), query)
        assert answer.status_code == 400
        assert "Lead0" not in answer.content.decode()
    assert alices.get(reverse("nurturing:overview"), {"page": "x"}).status_code == 200


def test_a_supervisor_choosing_an_unknown_manager_gets_a_404(client, olga):
    answer = signed_in(client, olga).get(reverse("nurturing:overview"), {"manager": 999999})

    assert answer.status_code == 404


def test_pages_keep_the_filters(client, clock, alice, enroll, sequence):
    for _ in range(30):
        enroll(alice, COMPLETED, sent=6)

    page = html(
        signed_in(client, alice).get(
            reverse("nurturing:overview"), {"state": "completed", "sequence": sequence.pk}
        )
    )

    assert f"state=completed&amp;sequence={sequence.pk}&amp;page=2" in page
    assert "Page 1 of 2" in page


def test_an_htmx_request_gets_just_the_list(client, clock, alice, enroll):
    enroll(alice, next_send_at=MONDAY + timedelta(days=7))

    page = html(
        signed_in(client, alice).get(reverse("nurturing:overview"), headers={"HX-Request": "true"})
    )

    assert "Lead0" in page and "<html" not in page


@pytest.mark.parametrize("state", ["active", "finished"])
def test_the_list_asks_the_database_as_often_for_70_enrollments_as_for_30(
    client, clock, olga, alice, bob, enroll, state, django_assert_max_num_queries
):
    def add(count):
        for number in range(count):
            manager = alice if number % 2 else bob
            if state == "active":
                enroll(manager, sent=1, next_send_at=MONDAY + timedelta(days=7))
            else:
                enroll(manager, HALTED, sent=1, reason="reply")

    olgas = signed_in(client, olga)
    add(30)  # more than a page, so that it is counted
    with django_assert_max_num_queries(15) as few:
        html(olgas.get(reverse("nurturing:overview"), {"state": state}))
    add(40)

    with django_assert_max_num_queries(len(few.captured_queries)):
        html(olgas.get(reverse("nurturing:overview"), {"state": state}))


def test_the_menu_leads_to_the_nurturing_page(client, alice):
    page = html(signed_in(client, alice).get(reverse("crm:today")))

    assert f'href="{reverse("nurturing:overview")}"' in page


# --- Which email works ----------------------------------------------------------------------


def results_of(user, **filters):
    [result] = [
        each
        for each in selectors.email_results(user, **filters)
        if each.sequence.name == "Дожимаем лида / Lead nurturing"
    ]
    return result


def counts(result):
    return [(email.sent, email.replied, email.called) for email in result.emails]


def test_each_answer_counts_for_the_last_email_that_went_before_it(clock, alice, enroll, make_lead):
    enroll(alice, HALTED, sent=2, reason="reply")
    enroll(alice, HALTED, sent=2, reason="call")
    enroll(alice, HALTED, sent=1, cancelled=1, reason="reply")  # email 2 never went
    enroll(alice, HALTED, sent=3, reason="status_change")  # the manager moved the lead
    enroll(alice, HALTED, sent=1, reason="bounce")
    enroll(alice, HALTED, sent=0, reason="call")  # called before the first email
    enroll(alice, sent=4, next_send_at=MONDAY + timedelta(days=5))  # still waiting

    result = results_of(alice)

    assert counts(result) == [
        (7 - 1, 1, 0),  # all but the one that called first got email 1
        (4, 1, 1),
        (2, 0, 0),
        (1, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
    ]
    assert result.answered_before_the_first == 1
    assert result.emails[1].answered == 2 and result.emails[1].rate == 50
    assert result.emails[4].rate is None


def test_an_answer_after_the_last_email_counts_for_it_until_the_lead_is_enrolled_again(
    clock, alice, enroll, make_lead
):
    answered = enroll(alice, COMPLETED, sent=6)
    crm_services.record_activity(
        answered.lead,
        Activity.Kind.STATUS_CHANGE,
        "Status changed",
        payload={"from": "nurturing", "to": "in_progress", "cause": "call"},
        at=answered.ended_at + timedelta(days=2),
    )
    silent = enroll(alice, COMPLETED, sent=6)
    crm_services.record_activity(  # a person moved it: not an answer
        silent.lead,
        Activity.Kind.STATUS_CHANGE,
        "Status changed",
        payload={"from": "nurturing", "to": "junk", "cause": "person"},
        at=silent.ended_at + timedelta(days=1),
    )
    again = enroll(alice, COMPLETED, sent=6)
    enroll(
        alice,
        HALTED,
        lead=again.lead,
        sent=1,
        reason="reply",
        enrolled_at=again.ended_at + timedelta(days=1),
        ended_at=again.ended_at + timedelta(days=5),
    )
    crm_services.record_activity(  # the reply that halted the second enrollment
        again.lead,
        Activity.Kind.STATUS_CHANGE,
        "Status changed",
        payload={"from": "nurturing", "to": "in_progress", "cause": "reply"},
        at=again.ended_at + timedelta(days=5),
    )

    result = results_of(alice)

    assert counts(result)[5] == (3, 0, 1)
    assert counts(result)[0] == (4, 1, 0)


def test_a_real_reply_halts_the_enrollment_and_counts_for_the_email_it_answered(
    clock, alice, nurtured_lead, django_capture_on_commit_callbacks
):
    enrollment = nurtured_lead.enrollments.get()
    OutboundMessage.objects.create(
        enrollment=enrollment,
        number=1,
        sender=alice,
        scheduled_for=MONDAY,
        created_at=MONDAY,
        state=OutboundMessage.State.SENT,
        sent_at=MONDAY,
    )
    Enrollment.objects.filter(pk=enrollment.pk).update(sent_count=1)

    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(
            nurtured_lead, "in_progress", by=None, cause=StatusChangeCause.REPLY
        )

    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.halt_reason) == (HALTED, "reply")
    assert counts(results_of(alice))[0] == (1, 1, 0)


def test_a_manager_counts_her_own_leads_a_supervisor_everyones_or_one_managers(
    clock, alice, bob, olga, enroll
):
    enroll(alice, HALTED, sent=1, reason="reply")
    enroll(bob, HALTED, sent=1, reason="call")
    enroll(bob, HALTED, sent=2, reason="call")

    assert counts(results_of(alice))[:2] == [(1, 1, 0), (0, 0, 0)]
    assert counts(results_of(olga))[:2] == [(3, 1, 1), (1, 0, 1)]
    assert counts(results_of(olga, manager=bob))[:2] == [(2, 0, 1), (1, 0, 1)]


def test_the_page_shows_each_email_with_its_rate(client, clock, alice, enroll):
    enroll(alice, HALTED, sent=1, reason="reply")
    enroll(alice, HALTED, sent=2, reason="call")
    enroll(alice, COMPLETED, sent=6)
    enroll(alice, HALTED, sent=0, reason="reply")

    page = html(signed_in(client, alice).get(reverse("nurturing:emails")))

    assert "Дожимаем лида / Lead nurturing" in page
    assert "Email 1 of 6" in page and "Email 6 of 6" in page
    assert "33%" in page and "50%" in page  # 1 of 3 after email 1, 1 of 2 after email 2
    assert '<rect class="fill" width="33"' in page
    assert "1 lead answered before the first email." in page


def test_the_numbers_use_the_same_queries_however_many_enrollments(
    client, clock, olga, alice, bob, enroll, django_assert_max_num_queries
):
    olgas = signed_in(client, olga)
    enroll(alice, HALTED, sent=1, reason="reply")
    with django_assert_max_num_queries(15) as few:
        html(olgas.get(reverse("nurturing:emails")))
    for number in range(20):
        enroll(bob if number % 2 else alice, HALTED, sent=number % 6, reason="call")
        enroll(alice, COMPLETED, sent=6)

    with django_assert_max_num_queries(len(few.captured_queries)):
        html(olgas.get(reverse("nurturing:emails")))


def test_the_numbers_page_filters_by_sequence_and_refuses_a_bad_one(client, alice, sequence):
    alices = signed_in(client, alice)

    assert alices.get(reverse("nurturing:emails"), {"sequence": sequence.pk}).status_code == 200
    assert alices.get(reverse("nurturing:emails"), {"sequence": "nope"}).status_code == 400


def test_the_page_reads_in_russian(client, clock, alice, enroll, settings):
    enroll(alice, HALTED, sent=1, reason="reply")
    alices = signed_in(client, alice)
    alices.cookies[settings.LANGUAGE_COOKIE_NAME] = "ru"

    page = html(alices.get(reverse("nurturing:emails")))

    assert 'lang="ru"' in page
    assert '<rect class="fill" width="100"' in page  # the bar's width is never "100,0"
