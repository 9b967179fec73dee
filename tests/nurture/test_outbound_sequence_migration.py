"""Migrations nurture.0009 and 0010 give every message its enrollment's sequence."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("nurture", "0008_outbound_newest_index")
WHEN = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def migrate(nurture=None):
    """Migrate nurture to `nurture`, or to its latest migration (where the other tests expect
    it), with crm at its latest."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    graph = executor.loader.graph
    targets = [*graph.leaf_nodes("crm"), nurture or graph.leaf_nodes("nurture")[0]]
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_existing_messages_get_their_enrollments_sequence():
    old = migrate(BEFORE)
    Lead, Sequence = old.get_model("crm", "Lead"), old.get_model("nurture", "Sequence")
    Enrollment, Message = (
        old.get_model("nurture", "Enrollment"),
        old.get_model("nurture", "OutboundMessage"),
    )
    status = old.get_model("crm", "LeadStatus").objects.get(code="nurturing")
    first = Sequence.objects.get()
    second = Sequence.objects.create(name="Second", enrolling_status=status)
    messages = []
    for number, sequence in enumerate((first, second, first), start=1):
        lead = Lead.objects.create(title=f"Lead {number}", status=status, last_activity_at=WHEN)
        enrollment = Enrollment.objects.create(lead=lead, sequence=sequence, enrolled_at=WHEN)
        message = Message.objects.create(
            enrollment=enrollment, number=1, state="sent", scheduled_for=WHEN, created_at=WHEN
        )
        messages.append((message.pk, sequence.pk))

    new = migrate()

    Message = new.get_model("nurture", "OutboundMessage")
    assert [(pk, Message.objects.get(pk=pk).sequence_id) for pk, _ in messages] == messages
