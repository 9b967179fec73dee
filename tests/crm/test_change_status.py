import pytest

from crm import services
from crm.models import Activity, LeadStatus
from crm.signals import lead_status_changed


@pytest.fixture
def announcements():
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    lead_status_changed.connect(receiver)
    yield received
    lead_status_changed.disconnect(receiver)


def test_the_default_statuses_exist_in_order(db):
    codes = list(LeadStatus.objects.values_list("code", "kind"))

    assert codes == [
        ("new", "open"),
        ("in_progress", "open"),
        ("nurturing", "nurturing"),
        ("converted", "won"),
        ("junk", "lost"),
    ]


def test_it_changes_the_status_and_records_it_on_the_timeline(make_lead, alice):
    lead = make_lead(alice)

    changed = services.change_status(lead, "nurturing", by=alice, reason="needs a week")

    lead.refresh_from_db()
    assert changed is True
    assert lead.status.code == "nurturing"
    entry = lead.activities.get(kind=Activity.Kind.STATUS_CHANGE)
    assert entry.actor == alice
    assert entry.payload == {
        "from": "new",
        "to": "nurturing",
        "cause": "person",
        "reason": "needs a week",
    }


def test_it_announces_the_change_only_after_commit(
    make_lead, alice, announcements, django_capture_on_commit_callbacks
):
    lead = make_lead(alice)
    announcements.clear()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.change_status(lead, "nurturing", by=alice)
    assert announcements == []

    for callback in callbacks:
        callback()
    assert announcements == [
        {
            "signal": lead_status_changed,
            "lead_id": lead.pk,
            "old_code": "new",
            "new_code": "nurturing",
            "by": alice,
            "cause": "person",
            "reason": "",
        }
    ]


def test_changing_to_the_same_status_does_nothing(
    make_lead, alice, announcements, django_capture_on_commit_callbacks
):
    lead = make_lead(alice, status_code="in_progress")
    before = lead.activities.count()

    with django_capture_on_commit_callbacks(execute=True):
        changed = services.change_status(lead, "in_progress", by=alice)

    assert changed is False
    assert lead.activities.count() == before
    assert announcements == []


def test_an_unknown_status_changes_nothing(make_lead, alice):
    lead = make_lead(alice)

    with pytest.raises(LeadStatus.DoesNotExist):
        services.change_status(lead, "no-such-status")

    lead.refresh_from_db()
    assert lead.status.code == "new"


def test_a_new_lead_announces_its_first_status(
    make_lead, alice, announcements, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        lead = make_lead(alice, status_code="nurturing")

    assert [(a["lead_id"], a["old_code"], a["new_code"]) for a in announcements] == [
        (lead.pk, None, "nurturing")
    ]
    assert lead.activities.get().kind == Activity.Kind.CREATED
