"""Bulk writes that Django's own spend most of their time building in Python."""

from django.db import connection


def update_each(objs: list, fields: list[str]) -> None:
    """Save `fields` of each of `objs` (instances of one model), each row its own values.

    What `bulk_update` does; on PostgreSQL as one UPDATE from arrays, one per field
    (`bulk_update` builds a CASE WHEN per field and row, which cost more than the rest of a
    batch of sends together).
    """
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, fields)
        return
    meta, quote = model._meta, connection.ops.quote_name
    table, pk = quote(meta.db_table), meta.pk
    columns = [meta.get_field(name) for name in fields]
    arrays = [[pk.get_db_prep_save(obj.pk, connection) for obj in objs]]
    arrays += [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in objs]
        for field in columns
    ]
    casts = [f"%s::{field.cast_db_type(connection)}[]" for field in (pk, *columns)]
    names = [quote(field.column) for field in (pk, *columns)]
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    # Only names from the model's metadata are formatted in; every value is a parameter.
    # "pk = ANY(ids)" as well, or the planner may hash-join the whole table.
    sql = (
        f"UPDATE {table} SET {assignments} "  # noqa: S608
        f"FROM unnest({', '.join(casts)}) AS v({', '.join(names)}) "
        f"WHERE {table}.{names[0]} = v.{names[0]} AND {table}.{names[0]} = ANY(%s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*arrays, arrays[0]])
