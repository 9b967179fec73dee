import pytest

from nurture.models import Sequence


@pytest.fixture
def default_sequence(db):
    return Sequence.objects.get(name="Дожимаем лида / Lead nurturing")


@pytest.fixture
def nurtured_lead(make_lead, alice, django_capture_on_commit_callbacks):
    """A lead of alice's, just moved to nurturing (so enrolled in the default sequence)."""
    from crm import services

    lead = make_lead(
        alice, first_name="Ivan", email="ivan@client.example", title="Shop", language="ru"
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.change_status(lead, "nurturing", by=alice)
    lead.refresh_from_db()
    return lead
