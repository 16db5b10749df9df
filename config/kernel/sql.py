"""Written-out statements for the message path, which runs them for every order.

Building and compiling a statement through the ORM costs two to four times the CPU of sending it (the profile
in the README's Performance section); these skip the building, not the ORM's meaning. Values go in through the
model fields' own `pre_save` and adaptation, and come out through the fields' own converters, so what is stored
and read is what the ORM would store and read, on PostgreSQL and SQLite alike. Signals are not sent: no model
on this path has receivers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model
from django.db.models.expressions import Col

M = TypeVar("M", bound=Model)


def _db():
    # The connection itself rather than the `connection` proxy, which looks the thread's connection up again
    # at every attribute: the fields' adaptation and converters read it several times a value (half of the
    # CPU of preparing an outbox row's parameters).
    return connections[DEFAULT_DB_ALIAS]


def table(model: type[Model]) -> str:
    return model._meta.db_table


def attnames(model: type[Model]) -> tuple[str, ...]:
    """The names of `model`'s concrete fields, as `select()` takes them: a statement that names its columns,
    not `*`, so that a column added by a later migration does not change what a prepared statement returns."""
    return tuple(field.attname for field in model._meta.concrete_fields)


def placeholders(values: Sequence[Any]) -> str:
    """`%s, %s, …`, one for each value: the list of an `IN (…)`."""
    return ", ".join(["%s"] * len(values))


def adapt(model: type[Model], name: str, value: Any) -> Any:
    """`value` as a parameter for the column of field `name`: a uuid is a hex string on SQLite, and so on."""
    return _column_field(model, name).get_db_prep_value(value, _db())


def _column_field(model: type[Model], name: str) -> Field:
    # get_field() also answers with reverse relations and generic keys, which have no column of their own.
    field = model._meta.get_field(name)
    assert isinstance(field, Field), f"{model.__name__}.{name} is not a column"
    return field


@cache
def _insert_plan(model: type[Model], vendor: str) -> tuple[str, tuple[Field, ...], bool]:
    meta = model._meta
    # An auto-incremented id: the database gives it. (django-stubs leave out Field.db_returning.)
    generated = meta.pk.db_returning  # type: ignore[attr-defined]
    fields = tuple(f for f in meta.concrete_fields if not (generated and f is meta.pk))
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    returning = f" RETURNING {connection.ops.quote_name(meta.pk.column)}" if generated else ""
    return f"INSERT INTO {meta.db_table} ({columns}) VALUES ({placeholders}){returning}", fields, generated


def insert(instance: M) -> M:
    """Insert a new instance as `save(force_insert=True)` would: defaults and auto_now stamps are set on it,
    and a generated id is read back into it."""
    db = _db()
    sql, fields, generated = _insert_plan(type(instance), db.vendor)
    params = [field.get_db_prep_save(field.pre_save(instance, True), db) for field in fields]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        if generated:
            instance.pk = cursor.fetchone()[0]
    return _as_stored(instance, db)


@cache
def _update_plan(model: type[Model], names: tuple[str, ...], vendor: str) -> tuple[str, tuple[Field, ...]]:
    meta = model._meta
    fields = [_column_field(model, name) for name in names]
    fields += [f for f in meta.concrete_fields if getattr(f, "auto_now", False) and f not in fields]
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    key = connection.ops.quote_name(meta.pk.column)
    return f"UPDATE {meta.db_table} SET {assignments} WHERE {key} = %s", tuple(fields)


def update(instance: Model, names: Sequence[str]) -> int:
    """Save the fields `names` of an existing row as `save(update_fields=names)` would, auto_now stamps
    included. Returns the number of rows changed (0: the row is gone)."""
    db = _db()
    sql, fields = _update_plan(type(instance), tuple(names), db.vendor)
    params = [field.get_db_prep_save(field.pre_save(instance, False), db) for field in fields]
    params.append(instance._meta.pk.get_db_prep_value(instance.pk, db))
    return execute(sql, params)


@dataclass(frozen=True)
class _Select:
    sql: str
    names: tuple[str, ...]
    converters: tuple[tuple[Callable[..., Any], ...], ...]
    columns: tuple[Col, ...]


@cache
def _select_plan(model: type[Model], names: tuple[str, ...], where: str, suffix: str, vendor: str) -> _Select:
    meta = model._meta
    fields = [_column_field(model, name) for name in names]
    columns = tuple(field.get_col(meta.db_table) for field in fields)
    converters = tuple(
        tuple(connection.ops.get_db_converters(col) + col.get_db_converters(connection)) for col in columns
    )
    column_list = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    return _Select(
        f"SELECT {column_list} FROM {meta.db_table} WHERE {where}{suffix}",
        tuple(field.attname for field in fields),
        converters,
        columns,
    )


def select(
    model: type[Model],
    names: Sequence[str],
    where: str,
    params: Sequence[Any],
    *,
    limit: int | None = None,
    lock: bool = False,
    skip_locked: bool = False,
) -> list[dict[str, Any]]:
    """Rows of `model` matching `where` (SQL over its columns, `%s` for each parameter), as dicts of the
    fields `names`, converted as the ORM converts them. `lock` adds FOR UPDATE where the database has it, and
    `skip_locked` SKIP LOCKED."""
    db = _db()
    suffix = f" LIMIT {int(limit)}" if limit is not None else ""
    if lock and db.features.has_select_for_update:
        suffix += " FOR UPDATE"
        if skip_locked and db.features.has_select_for_update_skip_locked:
            suffix += " SKIP LOCKED"
    plan = _select_plan(model, tuple(names), where, suffix, db.vendor)
    with db.cursor() as cursor:
        cursor.execute(plan.sql, params)
        rows = cursor.fetchall()
    return [_converted(plan, row, db) for row in rows]


def select_one(
    model: type[Model], names: Sequence[str], where: str, params: Sequence[Any], *, lock: bool = False
) -> dict[str, Any] | None:
    rows = select(model, names, where, params, limit=1, lock=lock)
    return rows[0] if rows else None


def _converted(plan: _Select, row: tuple, db) -> dict[str, Any]:
    values = {}
    for name, value, converters, col in zip(plan.names, row, plan.converters, plan.columns, strict=True):
        for converter in converters:
            value = converter(value, col, db)
        values[name] = value
    return values


def execute(sql: str, params: Sequence[Any] = ()) -> int:
    """Run one statement; returns the number of rows it changed."""
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def bound_lock_waits(seconds: float) -> None:
    """For the rest of the current transaction, a wait on a lock ends after `seconds` with LockNotAvailable
    (PostgreSQL's lock_timeout). SQLite has one writer at a time, and its own busy timeout."""
    if _db().vendor == "postgresql":
        execute("SELECT set_config('lock_timeout', %s, true)", [f"{round(seconds * 1000)}ms"])


def waited_too_long_for_a_lock(error: BaseException) -> bool:
    """Whether a database error is the end of a wait bounded by `bound_lock_waits`."""
    return getattr(error.__cause__, "sqlstate", None) == "55P03"  # lock_not_available


def loaded(model: type[M], **values: Any) -> M:
    """An instance of a row read by `select()`: a later `save()` updates that row rather than inserting one."""
    return _as_stored(model(**values), _db())


def _as_stored(instance: M, db) -> M:
    # As the ORM marks an instance it saved or loaded.
    instance._state.adding = False
    instance._state.db = db.alias
    return instance
