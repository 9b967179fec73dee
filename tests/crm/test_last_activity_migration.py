"""Migration crm.0006 fills the new columns from what the leads already hold."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("crm", "0005_managers_edit_own_profile")]


def migrate(targets=None):
    """Migrate crm to `targets`, or to its latest migration (where the other tests expect it)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = targets or executor.loader.graph.leaf_nodes("crm")
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_existing_leads_get_their_newest_entry_and_their_search_text():
    old = migrate(BEFORE)
    Lead, Activity = old.get_model("crm", "Lead"), old.get_model("crm", "Activity")
    status = old.get_model("crm", "LeadStatus").objects.get(code="new")
    active = Lead.objects.create(
        title="Сайт", first_name="Пётр", last_name="ИВАНОВ", company="Acme", status=status
    )
    quiet = Lead.objects.create(title="Quiet", status=status)
    for day in (3, 9, 5):
        Activity.objects.create(
            lead=active, kind="note", summary="n", created_at=datetime(2025, 1, day, tzinfo=UTC)
        )

    new = migrate()

    Lead = new.get_model("crm", "Lead")
    active, quiet = Lead.objects.get(pk=active.pk), Lead.objects.get(pk=quiet.pk)
    assert active.last_activity_at == datetime(2025, 1, 9, tzinfo=UTC)
    assert quiet.last_activity_at == quiet.created_at
    assert active.search_text == "петр иванов сайт acme"
