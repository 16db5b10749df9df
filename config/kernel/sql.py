"""Written-out statements for the message path, which runs them for every order.

Building and compiling a statement through the ORM costs two to four times the CPU of sending it (the profile
in the README's Performance section); these skip the building, not the ORM's meaning. Values go in through the
model fields' own `pre_save` and adaptation, and come out through the fields' own converters, so what is stored
and read is what the ORM would store and read, on PostgreSQL and SQLite alike. Signals are not sent: no model
on this path has receivers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
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


@dataclass(frozen=True)
class _Insert:
    sql: str
    fields: tuple[Field, ...]
    generated: bool  # the database gives the id, which the statement returns
    head: str  # INSERT INTO table (columns)
    row: str  # (%s, …)
    returning: str  # " RETURNING id", or ""
    # For each field, the types of value that its adaptation gives back as they are (`_PLAIN`), or none.
    plain: tuple[frozenset[type], ...]


# A str (or None) goes into a column of these exact field classes as it is: their get_db_prep_save() gives it
# back unchanged (Field's get_db_prep_value, and a to_python() that returns a str as it is, on every database),
# so `insert()` skips the call, a third of the fields' adaptation. Any other value, and any other field, a
# subclass included, goes through it.
_TEXT: frozenset[type] = frozenset({str, type(None)})
_PLAIN: dict[type, frozenset[type]] = {models.CharField: _TEXT, models.TextField: _TEXT}
_NONE: frozenset[type] = frozenset()


@cache
def _insert_plan(model: type[Model], vendor: str) -> _Insert:
    meta = model._meta
    # An auto-incremented id: the database gives it. (django-stubs leave out Field.db_returning.)
    generated = meta.pk.db_returning  # type: ignore[attr-defined]
    fields = tuple(f for f in meta.concrete_fields if not (generated and f is meta.pk))
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    head = f"INSERT INTO {meta.db_table} ({columns})"
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    returning = f" RETURNING {connection.ops.quote_name(meta.pk.column)}" if generated else ""
    plain = tuple(_PLAIN.get(type(f), _NONE) for f in fields)
    return _Insert(f"{head} VALUES {row}{returning}", fields, generated, head, row, returning, plain)


def insert(instance: M, *, at_once: bool = False) -> M:
    """Insert a new instance as `save(force_insert=True)` would: defaults and auto_now stamps are set on it,
    and a generated id is read back into it.

    Inside `batched()` the row is sent when the block ends, with the others of the block, and a generated id
    is read back then; `at_once` sends it now all the same (a caller that needs the id at once)."""
    db = _db()
    plan = _insert_plan(type(instance), db.vendor)
    params = [
        value if type(value) in plain else field.get_db_prep_save(value, db)
        for field, plain in zip(plan.fields, plan.plain, strict=True)
        for value in (field.pre_save(instance, True),)
    ]
    pending = _pending.get()
    if pending is not None and not at_once:
        pending.append(_Row(instance, params))
        return _as_stored(instance, db)
    with db.cursor() as cursor:
        _insert_one(cursor, plan, instance, params)
    return _as_stored(instance, db)


def _insert_one(cursor, plan: _Insert, instance: Model, params: list[Any]) -> None:
    cursor.execute(plan.sql, params)
    if plan.generated:
        instance.pk = cursor.fetchone()[0]


@dataclass(frozen=True)
class _Row:
    instance: Model
    params: list[Any]


@dataclass(frozen=True)
class _Later:
    sql: str
    params: Sequence[Any]


# What the current `batched()` block has been given to write, in order: rows of `insert()`, and statements of
# `later()` whose results nobody reads.
_pending: ContextVar[list[_Row | _Later] | None] = ContextVar("sagaflow_sql_pending", default=None)


@contextmanager
def batched() -> Iterator[None]:
    """The rows that `insert()` is given while the block runs, and the statements of `later()`, are written
    when it ends, in one statement on PostgreSQL: a data-modifying WITH of one multi-row INSERT for each table,
    in the order given (the rows of a table take their generated ids in that order, as one by one), and of
    each later statement. A round trip, and its share of the driver's and Django's CPU, for each fewer:
    placing an order writes six rows; a saga's step updates the saga, inserts its messages and its timeline
    line, and may end the order.

    What is written is what one by one would write: the values are taken as `insert()` is called. Run it
    inside the transaction the rows belong to. Any other statement on the connection inside the block (this
    module's, or the ORM's) sends what was given so far first, so that it sees it. When the block raises,
    nothing of it is written. A block inside another joins it."""
    if _pending.get() is not None:
        yield
        return
    given: list[_Row | _Later] = []
    token = _pending.set(given)
    try:
        with _db().execute_wrapper(_sent_first):
            yield
    finally:
        _pending.reset(token)
    _write(given)


def later(statement: str, params: Sequence[Any] = ()) -> None:
    """Run `statement` (an UPDATE, a DELETE or an INSERT … ON CONFLICT DO NOTHING whose row count nobody reads)
    with the rows of the current `batched()` block, or now outside one. It runs beside the block's inserts, on
    the same snapshot: it must not touch the rows they insert."""
    pending = _pending.get()
    if pending is None:
        execute(statement, params)
    else:
        pending.append(_Later(statement, params))


def _sent_first(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    # Inside a batch, a statement of the ORM or of raw SQL is preceded by what the batch holds: it must see it.
    _send_pending()
    return execute(sql, params, many, context)


def _send_pending() -> None:
    pending = _pending.get()
    if pending:
        given = pending[:]
        pending.clear()
        _write(given)


def _write(given: list[_Row | _Later]) -> None:
    if not given:
        return
    db = _db()
    if len(given) == 1 or db.vendor != "postgresql":
        with db.cursor() as cursor:
            for item in given:
                if isinstance(item, _Row):
                    _insert_one(cursor, _insert_plan(type(item.instance), db.vendor), item.instance, item.params)
                else:
                    cursor.execute(item.sql, item.params)
        return
    groups: dict[type[Model], list[_Row]] = {}
    statements: list[_Later] = []
    for item in given:
        if isinstance(item, _Row):
            groups.setdefault(type(item.instance), []).append(item)
        else:
            statements.append(item)
    shape = tuple((model, len(group)) for model, group in groups.items())
    statement = _batch_plan(shape, tuple(later.sql for later in statements), db.vendor)
    params = [value for group in groups.values() for row in group for value in row.params]
    params += [value for later in statements for value in later.params]
    with db.cursor() as cursor:
        cursor.execute(statement, params)
        ids = cursor.fetchone()
    generated_groups = [group for model, group in groups.items() if _insert_plan(model, db.vendor).generated]
    for group, group_ids in zip(generated_groups, ids, strict=True):
        for row, pk in zip(group, group_ids, strict=True):
            row.instance.pk = pk


@lru_cache(maxsize=512)
def _batch_plan(shape: tuple[tuple[type[Model], int], ...], statements: tuple[str, ...], vendor: str) -> str:
    # WITH w0 AS (INSERT … VALUES (…), (…) RETURNING id), w1 AS (INSERT … VALUES (…)), l0 AS (UPDATE …)
    # SELECT ARRAY(…), …: each generated id column comes back as an array, in the order of the rows (a sequence
    # gives each row of a multi-row VALUES a larger id than the row before). PostgreSQL runs every
    # data-modifying part of a WITH once, whether the query reads it or not.
    parts, returned = [], []
    for n, (model, count) in enumerate(shape):
        plan = _insert_plan(model, vendor)
        parts.append(f"w{n} AS ({plan.head} VALUES {', '.join([plan.row] * count)}{plan.returning})")
        if plan.generated:
            key = connection.ops.quote_name(model._meta.pk.column)
            returned.append(f"ARRAY(SELECT {key} FROM w{n} ORDER BY {key})")
    parts += [f"l{n} AS ({statement})" for n, statement in enumerate(statements)]
    return f"WITH {', '.join(parts)} SELECT {', '.join(returned) or 'NULL'}"


@cache
def _update_plan(model: type[Model], names: tuple[str, ...], vendor: str) -> tuple[str, tuple[Field, ...]]:
    meta = model._meta
    fields = [_column_field(model, name) for name in names]
    fields += [f for f in meta.concrete_fields if getattr(f, "auto_now", False) and f not in fields]
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    key = connection.ops.quote_name(meta.pk.column)
    return f"UPDATE {meta.db_table} SET {assignments} WHERE {key} = %s", tuple(fields)


def update(instance: Model, names: Sequence[str], *, with_batch: bool = False) -> int | None:
    """Save the fields `names` of an existing row as `save(update_fields=names)` would, auto_now stamps
    included. Returns the number of rows changed (0: the row is gone).

    `with_batch`: the update goes with the rows of the current `batched()` block, or at once outside one
    (`later()`), and None is returned: for a row the caller holds locked, which cannot be gone."""
    db = _db()
    sql, fields = _update_plan(type(instance), tuple(names), db.vendor)
    params = [field.get_db_prep_save(field.pre_save(instance, False), db) for field in fields]
    params.append(instance._meta.pk.get_db_prep_value(instance.pk, db))
    if with_batch:
        later(sql, params)
        return None
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
