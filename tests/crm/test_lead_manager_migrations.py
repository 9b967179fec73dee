"""Migrations telephony.0006 and nurture.0012 give the calls and emails there are their lead's
manager."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("telephony", "0005_today_indexes"), ("nurture", "0011_today_indexes")]
WHEN = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def migrate(targets=None):
    """Migrate to `targets`, or to the latest migrations (where the other tests expect them)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    graph = executor.loader.graph
    targets = targets or [key for key in graph.leaf_nodes() if key[0] in {"telephony", "nurture"}]
    executor.migrate([*graph.leaf_nodes("crm"), *targets])
    return executor.loader.project_state([*graph.leaf_nodes("crm"), *targets]).apps


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_existing_calls_and_emails_get_their_leads_manager():
    old = migrate(BEFORE)
    User, Lead = old.get_model("auth", "User"), old.get_model("crm", "Lead")
    Call = old.get_model("telephony", "Call")
    Enrollment, Message = (
        old.get_model("nurture", "Enrollment"),
        old.get_model("nurture", "OutboundMessage"),
    )
    status = old.get_model("crm", "LeadStatus").objects.get(code="nurturing")
    sequence = old.get_model("nurture", "Sequence").objects.get()
    alice, bob = (User.objects.create(username=name) for name in ("alice", "bob"))
    expected_calls, expected_messages = {}, {}
    for number, manager in enumerate((alice, bob, None)):
        lead = Lead.objects.create(
            title=f"Lead {number}", status=status, responsible=manager, last_activity_at=WHEN
        )
        call = Call.objects.create(
            source="pbx",
            call_id=f"c{number}",
            direction="in",
            state="missed",
            started_at=WHEN,
            last_event_at=WHEN,
            lead=lead,
            agent=bob,
        )
        enrollment = Enrollment.objects.create(lead=lead, sequence=sequence, enrolled_at=WHEN)
        message = Message.objects.create(
            enrollment=enrollment,
            sequence=sequence,
            number=1,
            state="sent",
            sender=alice,
            scheduled_for=WHEN,
            created_at=WHEN,
        )
        expected_calls[call.pk] = expected_messages[message.pk] = getattr(manager, "pk", None)
    no_lead = Call.objects.create(
        source="pbx", call_id="c9", direction="in", state="missed", started_at=WHEN,
        last_event_at=WHEN, agent=alice,
    )  # fmt: skip
    expected_calls[no_lead.pk] = None

    new = migrate()

    Call, Message = new.get_model("telephony", "Call"), new.get_model("nurture", "OutboundMessage")
    assert dict(Call.objects.values_list("pk", "lead_manager_id")) == expected_calls
    assert dict(Message.objects.values_list("pk", "lead_manager_id")) == expected_messages
