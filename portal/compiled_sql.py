"""Statements on the hottest paths, with their SQL compiled by the ORM once per thread and connection.

A download or a key fetch reads one row and the rows it points to (`select_related`). Building
that query's SQL costs the ORM several times what running it costs: every request would resolve
the joins, quote some hundred column names and pick their converters again. A `CompiledRead`
asks the ORM for the SQL once per thread and database connection, from an ordinary queryset, and
then only runs it with new parameters. The row goes through the same column converters and
`Model.from_db` as any queryset's, so the instances are the ones the ORM would have built.

`CompiledInsert` does the same for the row every audited request inserts, the audit event (or the
few a seal of the audit queue chains at once), and `CompiledUpdate` for the "last seen" stamps a
developer's requests write once a minute: a device's helper asks for its key every few minutes, so
nearly every real key fetch writes one.

Use them only where a profile shows the compilation; everywhere else a queryset is clearer.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Collection, Sequence
from itertools import chain, count
from typing import Any, Generic, TypeVar

from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql.compiler import SQLCompiler, SQLInsertCompiler
from django.db.models.sql.subqueries import InsertQuery, UpdateQuery

M = TypeVar("M", bound=models.Model)

# Django's SQLite cursor rewrites each %s of a statement to ? with a regular expression on every
# execute: 25 µs for the key fetch's 1,655-character SELECT, a fifth of that read. It rewrites named
# parameters, %(p0)s, with % formatting instead (1.5 µs), so on SQLite a compiled statement names
# its parameters (_numbered) and is run with them as a dict (_run).
_FORMAT_PARAMETER = re.compile(r"(?<!%)%s")


def _numbered(connection: BaseDatabaseWrapper, sql: str) -> str:
    if connection.vendor != "sqlite":
        return sql
    numbers = count()
    return _FORMAT_PARAMETER.sub(lambda _: f"%(p{next(numbers)})s", sql)


@functools.cache
def _parameter_names(count: int) -> tuple[str, ...]:
    return tuple(f"p{n}" for n in range(count))


def _run(cursor: Any, connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> None:
    if connection.vendor == "sqlite":
        cursor.execute(sql, dict(zip(_parameter_names(len(params)), params, strict=True)))
    else:
        cursor.execute(sql, params)


# Stand-ins for the lookups' values while the SQL is compiled: distinct, so that the order of the
# parameters in the SQL can be checked, and valid for integer and text columns alike.
_SENTINEL_BASE = 2_000_000_000


class _Compiled(threading.local):
    connection: BaseDatabaseWrapper | None = None
    sql = ""
    compiler: SQLCompiler | None = None
    converters: dict[int, Any] = {}
    order: list[int] = []  # which `where` value each SQL parameter is


class CompiledRead(Generic[M]):
    """At most one `model` row matching `where` (all equalities), with the rows at `related` attached.

    `related` names foreign-key paths as select_related does ("key", "key__gateway"); `fields`
    limits the columns loaded for a path ("" is the model itself), all concrete fields otherwise.

        read = CompiledRead(Assignment, where=("user_id", "pk"), related=("key", "key__gateway"))
        assignment = read.get(user.pk, 42)
    """

    def __init__(
        self,
        model: type[M],
        *,
        where: Sequence[str],
        related: Sequence[str] = (),
        fields: dict[str, Collection[str]] | None = None,
    ) -> None:
        self.model = model
        self.where = tuple(where)
        self.related = tuple(related)
        self.fields = fields or {}
        # (path, model, columns, where the primary key is among them) for the model and each related
        # path; worked out at the first compile, when every app's models are loaded.
        self.paths: list[tuple[str, type[models.Model], list[str], int]] = []
        self._compiled = _Compiled()

    def get(self, *values: Any) -> M | None:
        """The row whose `where` fields equal `values` (in order), or None."""
        if len(values) != len(self.where):
            raise TypeError(f"{self.model.__name__} read takes {len(self.where)} values, got {len(values)}.")
        if not all(fits_bigint(value) for value in values if isinstance(value, int)):
            return None  # as the ORM answers: no row has it (and SQLite would refuse the parameter)
        connection = connections[router.db_for_read(self.model)]
        compiled = self._compiled
        if compiled.connection is not connection:
            self._compile(connection)
        assert compiled.compiler is not None
        with connection.cursor() as cursor:
            _run(cursor, connection, compiled.sql, [values[n] for n in compiled.order])
            rows = cursor.fetchmany(1)
        if not rows:
            return None
        row = next(iter(compiled.compiler.apply_converters(rows, compiled.converters)))
        loaded: dict[str, models.Model | None] = {}
        start = 0
        for path, target, columns, pk_at in self.paths:
            values_here = row[start : start + len(columns)]
            start += len(columns)
            instance = None if values_here[pk_at] is None else target.from_db(connection.alias, columns, values_here)
            loaded[path] = instance
            if path:
                parent_path, _, name = path.rpartition("__")
                parent = loaded[parent_path]
                if parent is not None:
                    setattr(parent, name, instance)
        return loaded[""]  # type: ignore[return-value]

    def _compile(self, connection: BaseDatabaseWrapper) -> None:
        if not self.paths:
            self.paths = [self._columns(path) for path in ("", *self.related)]
        sentinels = [_SENTINEL_BASE + n for n in range(len(self.where))]
        names = [f"{path}__{column}" if path else column for path, _, columns, _ in self.paths for column in columns]
        queryset = self.model._base_manager.filter(**dict(zip(self.where, sentinels, strict=True)))
        query = queryset.order_by().values_list(*names)[:1].query
        compiler = query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        # The ORM orders a filter's conditions its own way: note where each `where` value goes.
        position = {str(sentinel): n for n, sentinel in enumerate(sentinels)}
        order = [position.get(str(param), -1) for param in params]
        if sorted(order) != list(range(len(sentinels))):
            raise RuntimeError(f"{self.model.__name__} read: its SQL must take each `where` value once.")
        compiled = self._compiled
        compiled.order = order
        compiled.converters = compiler.get_converters([column for column, _, _ in compiler.select])
        compiled.sql, compiled.compiler, compiled.connection = _numbered(connection, sql), compiler, connection

    def _columns(self, path: str) -> tuple[str, type[models.Model], list[str], int]:
        target = _model_at(self.model, path)
        wanted = self.fields.get(path)
        columns = [f.attname for f in target._meta.concrete_fields if wanted is None or f.attname in wanted]
        if target._meta.pk.attname not in columns:
            raise ValueError(f"{path or self.model.__name__}: the loaded fields must include the primary key.")
        return path, target, columns, columns.index(target._meta.pk.attname)


class _CompiledInsert(threading.local):
    connection: BaseDatabaseWrapper | None = None
    # By the number of rows inserted: the SQL, the compiler that prepares the values, and whether the
    # SQL takes them a column at a time (PostgreSQL's bulk INSERT ... SELECT * FROM UNNEST(array, ...)).
    statements: dict[int, tuple[str, SQLInsertCompiler, bool]]
    returns_pk = False


class CompiledInsert(Generic[M]):
    """`obj.save()` for new rows of `model`, with no signals, its INSERT compiled once per thread and connection.

    The values are prepared as the ORM prepares them (`pre_save`, `get_db_prep_save`), and the new
    primary keys are set on the objects, as save() sets them. `prefix` is SQL put before the INSERT,
    such as a data-modifying WITH on PostgreSQL, whose parameters `insert()` takes as `prefix_params`.
    Up to MAX_ROWS objects go in one statement, compiled once for each number of rows.
    """

    MAX_ROWS = 32

    def __init__(self, model: type[M], *, prefix: str = "") -> None:
        self.model = model
        self.prefix = prefix
        self._compiled = _CompiledInsert()

    def insert(self, *objs: M, prefix_params: Sequence[Any] = ()) -> None:
        if not 1 <= len(objs) <= self.MAX_ROWS:
            raise ValueError(f"{self.model.__name__} insert: 1 to {self.MAX_ROWS} rows at a time, not {len(objs)}.")
        meta = self.model._meta
        connection = connections[router.db_for_write(self.model)]
        compiled = self._compiled
        if compiled.connection is not connection:
            compiled.connection, compiled.statements = connection, {}
            compiled.returns_pk = connection.features.can_return_rows_from_bulk_insert
        if len(objs) not in compiled.statements:
            compiled.statements[len(objs)] = self._compile(connection, objs, compiled.returns_pk)
        sql, compiler, by_column = compiled.statements[len(objs)]
        fields = compiler.query.fields
        rows = [[compiler.prepare_value(field, compiler.pre_save_val(field, obj)) for field in fields] for obj in objs]
        params = [*prefix_params, *(map(list, zip(*rows, strict=True)) if by_column else chain.from_iterable(rows))]
        with connection.cursor() as cursor:
            _run(cursor, connection, sql, params)
            if compiled.returns_pk:
                pks = [row[0] for row in cursor.fetchall()]
            elif len(objs) == 1:
                pks = [connection.ops.last_insert_id(cursor, meta.db_table, meta.pk.column)]
            else:
                pks = [None] * len(objs)  # as bulk_create leaves them where the database cannot say
        for obj, pk in zip(objs, pks, strict=True):
            setattr(obj, meta.pk.attname, None if pk is None else meta.pk.to_python(pk))
            obj._state.adding = False
            obj._state.db = connection.alias

    def _compile(
        self, connection: BaseDatabaseWrapper, objs: Sequence[M], returns_pk: bool
    ) -> tuple[str, SQLInsertCompiler, bool]:
        meta = self.model._meta
        fields = [field for field in meta.local_concrete_fields if field is not meta.auto_field]
        query = InsertQuery(self.model)
        query.insert_values(fields, list(objs))
        compiler = query.get_compiler(connection=connection)
        compiler.returning_fields = [meta.pk] if returns_pk else None
        statements = compiler.as_sql()
        if len(statements) != 1:
            raise RuntimeError(f"{self.model.__name__} insert: expected one statement, got {len(statements)}.")
        [(sql, params)] = statements
        by_column = len(objs) > 1 and len(params) == len(fields)
        if not by_column and len(params) != len(fields) * len(objs):
            raise RuntimeError(f"{self.model.__name__} insert: its SQL takes its values in an unknown shape.")
        return _numbered(connection, self.prefix + sql), compiler, by_column


class _CompiledUpdate(threading.local):
    connection: BaseDatabaseWrapper | None = None
    # By which values are None (the ORM writes `= NULL` and `IS NULL` for them, without a parameter).
    statements: dict[tuple[bool, ...], str]


class CompiledUpdate(Generic[M]):
    """Compare and set: `UPDATE model SET fields WHERE pk = %s AND expect = %s`, compiled once per thread and shape.

    `update(pk, expected, values)` writes `values` (a dict of `fields`) to the row, and raises each of
    `increments` (integer columns) by one, only if the row's `expect` column still holds `expected`:
    the value the caller read. Of two requests that read the same row, the first writes and the
    second changes nothing; `update` says which one it was. The values are prepared as the ORM
    prepares them (`get_db_prep_save`, `get_db_prep_value`).
    """

    def __init__(self, model: type[M], *, fields: Sequence[str], expect: str, increments: Sequence[str] = ()) -> None:
        self.model = model
        self.field_names = tuple(fields)
        self._field_name_set = frozenset(self.field_names)  # what update() checks its values against
        self.expect_name = expect
        self.increments = tuple(increments)
        self._compiled = _CompiledUpdate()

    @functools.cached_property
    def _fields(self) -> tuple[list[models.Field], models.Field]:
        """The written fields and the compared one, looked up once (at the first update, when the models are loaded)."""
        meta = self.model._meta
        return [_concrete(meta, name) for name in self.field_names], _concrete(meta, self.expect_name)

    def update(self, pk: Any, expected: Any, values: dict[str, Any]) -> bool:
        """Whether the row was written (False: gone, or its `expect` column changed since it was read)."""
        if values.keys() != self._field_name_set:
            raise TypeError(f"{self.model.__name__} update: give exactly {', '.join(self.field_names)}.")
        connection = connections[router.db_for_write(self.model)]
        compiled = self._compiled
        if compiled.connection is not connection:
            compiled.connection, compiled.statements = connection, {}
        shape = (expected is None, *(values[name] is None for name in self.field_names))
        params = self._params(connection, pk, expected, values)
        if shape not in compiled.statements:
            compiled.statements[shape] = self._compile(connection, pk, expected, values, params)
        with connection.cursor() as cursor:
            _run(cursor, connection, compiled.statements[shape], params)
            return cursor.rowcount > 0

    def _params(self, connection: BaseDatabaseWrapper, pk: Any, expected: Any, values: dict[str, Any]) -> list[Any]:
        written, compared = self._fields
        params = [
            field.get_db_prep_save(values[name], connection=connection)
            for name, field in zip(self.field_names, written, strict=True)
            if values[name] is not None
        ]
        params += [1] * len(self.increments)
        for field, value in ((self.model._meta.pk, pk), (compared, expected)):
            if value is not None:
                params.append(field.get_db_prep_value(field.get_prep_value(value), connection, prepared=True))
        return params

    def _compile(
        self, connection: BaseDatabaseWrapper, pk: Any, expected: Any, values: dict[str, Any], params: list[Any]
    ) -> str:
        query = UpdateQuery(self.model)
        in_order = {name: values[name] for name in self.field_names}  # the order _params prepares them in
        query.add_update_values({**in_order, **{name: models.F(name) + 1 for name in self.increments}})
        query.add_q(models.Q(pk=pk) & models.Q(**{self.expect_name: expected}))
        sql, orm_params = query.get_compiler(connection=connection).as_sql()
        # The statement is kept for these values' shape; every later call brings its own parameters,
        # so they must be the ones the ORM put in, in its order.
        if list(orm_params) != params:
            raise RuntimeError(f"{self.model.__name__} update: its SQL takes its values in an unknown order.")
        return _numbered(connection, sql)


def fits_bigint(value: object) -> bool:
    """Whether `value` is an int a 64-bit integer column can hold (a larger one matches no row, and breaks SQLite)."""
    return isinstance(value, int) and -(2**63) <= value < 2**63


def _concrete(meta: Any, name: str) -> models.Field:
    field = meta.get_field(name)
    if not isinstance(field, models.Field) or not field.concrete:
        raise ValueError(f"{name} on {meta.object_name} is not a column.")
    return field


def _model_at(model: type[models.Model], path: str) -> type[models.Model]:
    for name in filter(None, path.split("__")):
        field = model._meta.get_field(name)
        if not field.many_to_one and not field.one_to_one:
            raise ValueError(f"{name} on {model.__name__} is not a foreign key.")
        model = field.related_model  # type: ignore[assignment]
    return model
