"""Trigram indexes for the lead search (crm.selectors.search_leads): a substring of the search
text or of the phone is found through them, not by reading every lead. PostgreSQL only (pg_trgm,
trusted since PostgreSQL 13, so the database's owner may create it); elsewhere nothing."""

from django.db import migrations

INDEXES = {
    "lead_search_text_trgm_idx": "search_text",
    "lead_phone_trgm_idx": "phone",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON crm_lead USING gin ({column} gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("crm", "0006_lead_last_activity_and_search")]

    operations = [migrations.RunPython(create, drop)]
