"""
Hot statements compiled once per database and run again with new values.

Django builds a queryset and compiles its SQL in Python each time it runs.
For the small statements every request makes (its token, the fiche a
transition locks and writes, a page of fiches) that costs several times the
database's own work: about a millisecond of Python against a tenth of one of
SQL. A prepared statement is built once per database with a marker in place
of each value that changes, compiled by Django, and then run as its SQL with
the markers' places filled in; a read's columns are converted as the ORM
would (a datetime on SQLite).

Only values that leave the SQL's shape alone may change: ids, text and
instants compared or written with ``=``, never a None (``IS NULL``), a list
(``IN``) or a slice (Django writes ``LIMIT`` into the text; ``Prepared.rows``
takes its own). The compile refuses a statement whose markers did not all
become parameters, and a run refuses a value of another type.
"""

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, DurationField, Field, Model, QuerySet
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery, UpdateQuery
from django.db.transaction import TransactionManagementError

ModelT = TypeVar("ModelT", bound=Model)

# Far from any id or count a statement compares with, and each one apart.
_INT_BASE = 2**62 + 7_919


class _IntMarker(int):
    """A placeholder id: an int the ORM passes through as a parameter, found again by its value."""


class _TextMarker(str):
    """A placeholder text, found again by its value."""


class _InstantMarker(datetime):
    """A placeholder instant, found again by its value as the database takes it."""


class _SpanMarker(timedelta):
    """A placeholder duration, found again by its value as the database takes it."""


# Each marker far from the next: a value derived from one (an id + 1) is never taken for another.
_INT_STEP = 2**32
_INT_MARKERS = range(_INT_BASE, _INT_BASE + 2**52)
_MARKERS: dict[type, Callable[[int], Any]] = {
    int: lambda index: _IntMarker(_INT_BASE + index * _INT_STEP),
    str: lambda index: _TextMarker(f"\x1fprepared:{index}\x1f"),
    datetime: lambda index: _InstantMarker(1901 + 3 * index, 2, 3, 4, 5, 6, 100_003, tzinfo=UTC),
    timedelta: lambda index: _SpanMarker(days=12_345 + 1_000 * index, microseconds=100_003),
}
# What SQLite and PostgreSQL store in a bigint: an id past it matches no row, as the ORM answers it.
_BIGINT = range(-(2**63), 2**63)


class OutOfRange(ValueError):
    """An id no bigint column holds: no row has it."""


# How the database takes each kind of value: as these fields hand it over.
_FIELDS: "dict[type, Field[Any, Any]]" = {datetime: DateTimeField(), timedelta: DurationField()}
_ANY_MARKER = (bool, _IntMarker, _TextMarker, _InstantMarker, _SpanMarker)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[tuple[int, str], ...]  # (index in params, name of the value that goes there)
    locks: bool = False  # a read that locks its rows: inside a transaction only, as the ORM says
    names: tuple[str, ...] = ()  # a read's columns, as values() names them
    columns: tuple[Any, ...] = ()  # their expressions, for the converters


class _Statement:
    """What reads and writes share: markers in, slots found, values checked and put in their places."""

    def __init__(
        self,
        params: tuple[str, ...],
        *,
        text: tuple[str, ...] = (),
        instants: tuple[str, ...] = (),
        spans: tuple[str, ...] = (),
    ) -> None:
        self._params = params
        self._kinds: dict[str, type] = {
            name: (str if name in text else datetime if name in instants else timedelta if name in spans else int)
            for name in params
        }
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._lock = threading.Lock()

    def _markers(self) -> dict[str, Any]:
        return {name: _MARKERS[self._kinds[name]](index) for index, name in enumerate(self._params)}

    def _compile(self, wrapper: BaseDatabaseWrapper) -> _Compiled:
        raise NotImplementedError

    def _compiled_for(self, wrapper: BaseDatabaseWrapper) -> _Compiled:
        key = (wrapper.alias, wrapper.vendor)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compile(wrapper)
            with self._lock:
                self._compiled[key] = compiled
        return compiled

    def _slots(
        self, wrapper: BaseDatabaseWrapper, markers: dict[str, Any], sql: str, params: list[Any]
    ) -> tuple[tuple[int, str], ...]:
        """Where each marker went among ``params``; refused unless each went there, and only there."""
        by_value = {self._adapted(wrapper, name, marker): name for name, marker in markers.items()}
        slots = tuple(
            (index, by_value[param])
            for index, param in enumerate(params)
            if isinstance(param, int | str | datetime | timedelta) and not isinstance(param, bool) and param in by_value
        )
        missing = set(self._params) - {name for _index, name in slots}
        inlined = {name for name, marker in markers.items() if str(marker) in sql}
        if missing or inlined:
            raise TypeError(f"Prepared statement: {sorted(missing | inlined)} did not all become parameters.")
        taken = {index for index, _name in slots}
        derived = [
            param
            for index, param in enumerate(params)
            if index not in taken and type(param) is int and param in _INT_MARKERS
        ]
        if derived:
            raise TypeError(f"Prepared statement: {derived} were computed from a marker, not put in its place.")
        return slots

    def _adapted(self, wrapper: BaseDatabaseWrapper, name: str, value: Any) -> Any:
        kind = self._kinds[name]
        if kind in _FIELDS:
            return _FIELDS[kind].get_db_prep_value(value, wrapper)
        return kind(value)  # a choice's plain value

    def _params_for(self, wrapper: BaseDatabaseWrapper, compiled: _Compiled, values: Mapping[str, Any]) -> list[Any]:
        params = list(compiled.params)
        for index, name in compiled.slots:
            value, kind = values[name], self._kinds[name]
            # Markers are ints, strs and datetimes too: one here would be a statement built in place of a value.
            invalid = isinstance(value, _ANY_MARKER)
            if not isinstance(value, kind) or invalid or (isinstance(value, datetime) and value.tzinfo is None):
                raise TypeError(f"Prepared statement: {name} takes a value of type {kind.__name__}, not {value!r}.")
            if kind is int and value not in _BIGINT:
                raise OutOfRange(f"Prepared statement: {name} is out of a bigint's range: {value}.")
            params[index] = self._adapted(wrapper, name, value)
        return params


class Prepared(_Statement):
    """
    A values() read of one fixed shape: ``build(**markers)`` returns it, with
    each keyword (an ``int`` by default, a ``str`` when named in ``text``, an
    aware ``datetime`` in ``instants``) where a value of that name goes at
    each run.
    """

    def __init__(self, build: Callable[..., "QuerySet[Any, Any]"], *params: str, **kinds: tuple[str, ...]) -> None:
        super().__init__(params, **kinds)
        self._build = build

    def _compile(self, wrapper: BaseDatabaseWrapper) -> _Compiled:
        markers = self._markers()
        query = self._build(**markers).query
        compiler = query.get_compiler(connection=wrapper)
        sql, params = compiler.as_sql()
        if not query.values_select and not query.annotation_select:
            raise TypeError("Prepared read: build() must return a values() queryset.")
        # As ValuesIterable names them: in values()'s own order where the query keeps it (Django 5.2 on).
        selected = getattr(query, "selected", None)
        return _Compiled(
            sql=sql,
            params=tuple(params),
            slots=self._slots(wrapper, markers, sql, list(params)),
            locks=bool(query.select_for_update) and wrapper.features.has_select_for_update,
            names=tuple(selected)
            if selected
            else (*query.extra_select, *query.values_select, *query.annotation_select),
            columns=tuple(column[0] for column in compiler.select[: compiler.col_count]),
        )

    def rows(
        self, *, using: str = DEFAULT_DB_ALIAS, limit: int | None = None, offset: int = 0, **values: Any
    ) -> list[dict[str, Any]]:
        """The rows read with ``values`` in the markers' places, as dicts named as values() names them."""
        wrapper = connections[using]  # this thread's connection
        compiled = self._compiled_for(wrapper)
        if compiled.locks and wrapper.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        try:
            params = self._params_for(wrapper, compiled, values)
        except OutOfRange:
            return []  # as the ORM answers a lookup past a bigint: no row
        sql = compiled.sql
        if limit is not None or offset:
            # The text Django would write for the slice, after the ORDER BY: these reads are plain SELECTs.
            sql = f"{sql} {wrapper.ops.limit_offset_sql(offset, None if limit is None else offset + limit)}"
        with wrapper.cursor() as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        return [dict(zip(compiled.names, row, strict=True)) for row in _converted(wrapper, compiled, fetched)]

    def one(self, **values: Any) -> dict[str, Any] | None:
        """The first row read with ``values`` (see ``rows``), or None."""
        found = self.rows(**values)
        return found[0] if found else None


class PreparedUpdate(_Statement):
    """
    An UPDATE of one fixed shape: ``build(**markers)`` returns the queryset
    whose rows it changes and the changes, as ``QuerySet.update()`` takes
    them; markers as ``Prepared``'s.
    """

    def __init__(
        self, build: Callable[..., tuple["QuerySet[Any, Any]", dict[str, Any]]], *params: str, **kinds: tuple[str, ...]
    ) -> None:
        super().__init__(params, **kinds)
        self._build = build

    def _compile(self, wrapper: BaseDatabaseWrapper) -> _Compiled:
        markers = self._markers()
        queryset, changes = self._build(**markers)
        # What QuerySet.update() does, short of running it.
        query: Any = queryset.query.chain(UpdateQuery)
        query.add_update_values(changes)
        query.annotations = {}
        sql, params = query.get_compiler(connection=wrapper).as_sql()
        if query.related_updates:
            raise TypeError("Prepared update: one table only.")
        return _Compiled(sql=sql, params=tuple(params), slots=self._slots(wrapper, markers, sql, list(params)))

    def run(self, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> int:
        """Run the update with ``values`` in the markers' places; return how many rows it changed."""
        wrapper = connections[using]
        compiled = self._compiled_for(wrapper)
        try:
            params = self._params_for(wrapper, compiled, values)
        except OutOfRange:
            return 0  # no row has that id
        with wrapper.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            changed: int = cursor.rowcount
        return changed


class PreparedInsert(_Statement):
    """
    An INSERT of one row of a fixed shape: ``build(**markers)`` returns the
    unsaved instance, as ``Model.objects.create()`` takes it (its database
    defaults left to the database); markers as ``Prepared``'s, and
    ``timedelta`` ones named in ``spans``.
    """

    def __init__(
        self, build: Callable[..., Model], *params: str, skip_conflicts: bool = False, **kinds: tuple[str, ...]
    ) -> None:
        super().__init__(params, **kinds)
        self._build = build
        self._skip_conflicts = skip_conflicts

    def _compile(self, wrapper: BaseDatabaseWrapper) -> _Compiled:
        markers = self._markers()
        row = self._build(**markers)
        meta = row._meta
        # What Model.save() inserts of a new row: its stored columns but the generated and the automatic id.
        fields = [field for field in meta.local_concrete_fields if not field.generated and field is not meta.auto_field]
        # PostgreSQL's ON CONFLICT DO NOTHING skips a row that a unique or exclusion constraint refuses,
        # without failing the transaction (SQLite's OR IGNORE would skip a failed CHECK too: not there).
        skips = self._skip_conflicts and wrapper.vendor == "postgresql"
        query = InsertQuery(type(row), on_conflict=OnConflict.IGNORE if skips else None)
        query.insert_values(fields, [row])
        ((sql, params),) = query.get_compiler(connection=wrapper).as_sql()
        return _Compiled(sql=sql, params=tuple(params), slots=self._slots(wrapper, markers, sql, list(params)))

    def run(self, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> bool:
        """
        Insert the row with ``values`` in the markers' places; return whether
        it was (False: ``skip_conflicts``, and a constraint stood in the way).
        """
        wrapper = connections[using]
        compiled = self._compiled_for(wrapper)
        with wrapper.cursor() as cursor:
            cursor.execute(compiled.sql, self._params_for(wrapper, compiled, values))
            return bool(cursor.rowcount)


def _converted(wrapper: BaseDatabaseWrapper, compiled: _Compiled, fetched: list[Any]) -> Iterator[tuple[Any, ...]]:
    converters = [
        (index, functions, column)
        for index, column in enumerate(compiled.columns)
        if (functions := wrapper.ops.get_db_converters(column) + column.get_db_converters(wrapper))
    ]
    if not converters:
        yield from fetched
        return
    for row in fetched:
        values = list(row)
        for index, functions, column in converters:
            for function in functions:
                values[index] = function(values[index], column, wrapper)
        yield tuple(values)


def columns(model: type[Model], prefix: str = "") -> tuple[str, ...]:
    """The values() names of ``model``'s stored columns, each after ``prefix`` (``"projet__"``: a related row's)."""
    return tuple(f"{prefix}{field.attname}" for field in model._meta.concrete_fields)


def instance(model: type[ModelT], row: Mapping[str, Any], prefix: str = "") -> ModelT:
    """The ``model`` instance of ``row``'s ``columns(model, prefix)``, as the ORM would have built it."""
    return model.from_db(DEFAULT_DB_ALIAS, columns(model), [row[name] for name in columns(model, prefix)])
