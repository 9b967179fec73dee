"""Bulk writes that Django's own spend most of their time building in Python.

On PostgreSQL each is one statement over arrays (`unnest`), one array per column; elsewhere
they fall back to Django's bulk_create, bulk_update and update. Only names from the model's
metadata are formatted into the SQL; every value is a parameter.
"""

from collections import defaultdict

from django.db import connection
from django.db.models import F, Q


def update_each(objs: list, fields: list[str]) -> None:
    """Save `fields` of each of `objs` (instances of one model), each row its own values.

    What `bulk_update` does; on PostgreSQL as one UPDATE from arrays (`bulk_update` builds a
    CASE WHEN per field and row, which cost more than the rest of a batch of sends together).
    """
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, fields)
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    values = {
        field.attname: [
            field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in objs
        ]
        for field in columns
    }
    ids = [meta.pk.get_db_prep_save(obj.pk, connection) for obj in objs]
    _update_from_arrays(model, ids, values, {})


def update_rows(
    model, ids: list, values: dict[str, list], *, add: dict[str, int] | None = None
) -> None:
    """Set, in row `ids[i]`, each column named in `values` to its list's value `i`, and add
    the numbers in `add` to those columns of every row.

    The values go to the database driver as they are (numbers, text, aware datetimes): no
    per-value preparation by the fields, which cost a dispatch about 15 % (benchmarks/nurture.py).
    Anything that needs a field's own preparation goes through `update_each`. Without
    PostgreSQL: one UPDATE per distinct combination of values (a backlog shares a few).
    """
    if not ids:
        return
    add = add or {}
    if connection.vendor == "postgresql":
        _update_from_arrays(model, ids, values, add)
        return
    groups = defaultdict(list)
    for index, pk in enumerate(ids):
        groups[tuple(column[index] for column in values.values())].append(pk)
    increments = {name: F(name) + amount for name, amount in add.items()}
    for combination, pks in groups.items():
        model.objects.filter(pk__in=pks).update(
            **dict(zip(values, combination, strict=True)), **increments
        )


def _update_from_arrays(model, ids: list, values: dict[str, list], add: dict[str, int]) -> None:
    meta, quote = model._meta, connection.ops.quote_name
    table, pk = quote(meta.db_table), meta.pk
    fields = [meta.get_field(name) for name in values]
    names = [quote(field.column) for field in (pk, *fields)]
    casts = [f"%s::{field.cast_db_type(connection)}[]" for field in (pk, *fields)]
    assignments = [f"{name} = v.{name}" for name in names[1:]]
    assignments += [
        f"{quote(meta.get_field(name).column)} = {table}.{quote(meta.get_field(name).column)} + "
        f"{int(amount)}"
        for name, amount in add.items()
    ]
    # "pk = ANY(ids)" as well, or the planner may hash-join the whole table.
    sql = (
        f"UPDATE {table} SET {', '.join(assignments)} "  # noqa: S608
        f"FROM unnest({', '.join(casts)}) AS v({', '.join(names)}) "
        f"WHERE {table}.{names[0]} = v.{names[0]} AND {table}.{names[0]} = ANY(%s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [ids, *values.values(), ids])


def insert_rows(model, rows: dict[str, list], **same) -> list[int]:
    """Insert a row for each position of the lists in `rows` (field name -> one value per row);
    every other column is `same`'s value for it, or its default. Returns the new rows' ids, in
    order.

    On PostgreSQL one INSERT ... SELECT from arrays of the columns that differ from row to row:
    bulk_create prepares every field of every row in Python, which was most of the time a
    dispatch batch took. A field whose default must differ per row (a uuid4, say) has to be in
    `rows`. Elsewhere, bulk_create.
    """
    count = len(next(iter(rows.values()), []))
    if not count:
        return []
    if connection.vendor != "postgresql":
        objs = [
            model(**same, **{name: column[index] for name, column in rows.items()})
            for index in range(count)
        ]
        model.objects.bulk_create(objs)
        return [obj.pk for obj in objs]
    meta, quote = model._meta, connection.ops.quote_name
    template = model(**same)
    varying = [meta.get_field(name) for name in rows]
    columns, selected, params = [], [], []
    for field in meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(quote(field.column))
        if field in varying:
            selected.append(f"v.{quote(field.column)}")
        else:
            selected.append(f"%s::{field.cast_db_type(connection)}")
            params.append(field.get_db_prep_save(field.pre_save(template, add=True), connection))
    arrays = [f"%s::{field.cast_db_type(connection)}[]" for field in varying]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(selected)} FROM unnest({', '.join(arrays)}) "
        f"AS v({', '.join(quote(field.column) for field in varying)}) "
        f"RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *rows.values()])
        return [row[0] for row in cursor.fetchall()]


def raise_to_latest(model, field_name: str, ids: list, values: list) -> None:
    """Set the column `field_name` of row `ids[i]` to `values[i]` where that is later than what
    it holds (or it holds NULL); an earlier value changes nothing, so concurrent writers end
    with the latest. On PostgreSQL one UPDATE from arrays; elsewhere one per distinct value."""
    if not ids:
        return
    meta, quote = model._meta, connection.ops.quote_name
    field = meta.get_field(field_name)
    if connection.vendor != "postgresql":
        groups = defaultdict(list)
        for pk, value in zip(ids, values, strict=True):
            groups[value].append(pk)
        for value, pks in groups.items():
            model.objects.filter(pk__in=pks).filter(
                Q(**{f"{field_name}__isnull": True}) | Q(**{f"{field_name}__lt": value})
            ).update(**{field_name: value})
        return
    table, pk, column = quote(meta.db_table), quote(meta.pk.column), quote(field.column)
    # GREATEST ignores NULLs; the WHERE leaves rows already as late untouched (no new version).
    sql = (
        f"UPDATE {table} SET {column} = GREATEST({table}.{column}, v.value) "  # noqa: S608
        f"FROM unnest(%s::{meta.pk.cast_db_type(connection)}[], "
        f"%s::{field.cast_db_type(connection)}[]) AS v(id, value) "
        f"WHERE {table}.{pk} = v.id AND {table}.{pk} = ANY(%s) "
        f"AND ({table}.{column} IS NULL OR {table}.{column} < v.value)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(ids), list(values), list(ids)])
