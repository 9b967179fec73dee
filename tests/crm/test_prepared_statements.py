"""On PostgreSQL a query run again and again on one connection is prepared there (from its
sixth run): the server plans it once, not on every page."""

import pytest
from django.db import connection

from crm.models import Lead


@pytest.mark.postgres
@pytest.mark.django_db
def test_after_five_runs_a_query_is_prepared_on_its_connection(make_lead, alice):
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    make_lead(alice)

    for _ in range(6):
        assert len(Lead.objects.filter(responsible=alice).values_list("pk", flat=True)) == 1

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any('"crm_lead"."responsible_id" = $1' in statement for statement in prepared)
