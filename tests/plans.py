"""PostgreSQL's plans for the queries the tests make, to check which indexes they read."""

from django.db import connection
from django.test.utils import CaptureQueriesContext


def plan_of(sql: str, params=()) -> str:
    """EXPLAIN of `sql`, with sequential scans off: a test's tables are too small to need an
    index, so the planner would scan them whatever indexes there are."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def queries_of(client, url: str, *, containing: str, starting: str = "") -> list[str]:
    """The SQL of the queries a request to `url` made that start with `starting` and contain
    `containing`."""
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith(starting) and containing in query["sql"]
    ]
