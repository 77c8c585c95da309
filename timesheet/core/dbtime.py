"""
Time arithmetic on the database's clock.

Django's generic duration arithmetic on SQLite calls back into Python for
every row; the expressions here compile to plain SQL on both supported
backends, so a tick over many rows is as fast as a hand-written UPDATE, and
they are exact: integer microseconds on SQLite (whose clock has millisecond
resolution, so every mark is a whole millisecond), intervals on PostgreSQL.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from django.db import NotSupportedError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DurationField, Expression, F, Value
from django.db.models.functions import Greatest, Now
from django.db.models.sql.compiler import SQLCompiler
from django.utils.dateparse import parse_datetime


def sqlite_exact_microseconds(later: str, earlier: str) -> str:
    """
    SQLite's SQL for the exact microseconds from ``earlier`` to ``later``,
    two SQL expressions in Julian days (``julianday(...)``) of instants on
    whole milliseconds, as SQLite's clock and every instant it stores are.
    julianday() is a double of days; its error (~40 us at today's dates) is
    far below half a millisecond, so rounding to whole milliseconds recovers
    the exact difference.
    """
    return f"CAST(ROUND(({later} - {earlier}) * 86400000.0) AS INTEGER) * 1000"


# What an expression's argument may be: a field's name, a duration, or an expression.
Operand = str | timedelta | F | Expression
SQL = tuple[str, list[Any]]


class _DurationExpression(Expression):
    output_field = DurationField()

    def __init__(self, *expressions: Operand) -> None:
        super().__init__()
        self.expressions: list[Any] = [_expr(expression) for expression in expressions]

    def get_source_expressions(self) -> list[Any]:
        return self.expressions

    def set_source_expressions(self, expressions: Sequence[Any]) -> None:
        self.expressions = list(expressions)

    def _compile_each(self, compiler: SQLCompiler) -> list[tuple[str, list[Any]]]:
        """Each source expression's SQL and its own parameters."""
        compiled = []
        for expression in self.expressions:
            sql, params = compiler.compile(expression)
            compiled.append((sql, list(params)))
        return compiled

    def _compile_all(self, compiler: SQLCompiler) -> tuple[list[str], list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        for expression in self.expressions:
            sql, expression_params = compiler.compile(expression)
            parts.append(sql)
            params.extend(expression_params)
        return parts, params

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any) -> NoReturn:
        raise NotSupportedError(f"Time accounting supports SQLite and PostgreSQL, not {connection.vendor}.")


class Elapsed(_DurationExpression):
    """
    The time from ``since`` to ``until`` (the database's now by default), plus
    ``offset``, or zero if that is negative: a clock behind the mark never
    takes time back. With ``clamp=False`` a negative difference is kept (a
    stop at an instant before the mark takes the time after it back).
    """

    def __init__(
        self, since: Operand, until: Operand | None = None, offset: Operand = timedelta(0), clamp: bool = True
    ) -> None:
        super().__init__(since, Now() if until is None else until, offset)
        self.clamp = clamp

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any) -> SQL:
        (since, since_params), (until, until_params), (offset, offset_params) = self._compile_each(compiler)
        if isinstance(self.expressions[1], Now):
            until = "'now'"  # julianday('now') skips formatting and parsing the instant on every row
        elapsed = f"{sqlite_exact_microseconds(f'julianday({until})', f'julianday({since})')} + {offset}"
        # The parameters in the order their placeholders come in the text: until's first.
        params = [*until_params, *since_params, *offset_params]
        return (f"MAX(0, {elapsed})" if self.clamp else f"({elapsed})"), params

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any) -> SQL:
        (since, since_params), (until, until_params), (offset, offset_params) = self._compile_each(compiler)
        elapsed = f"{until} - {since} + {offset}::interval"
        params = [*until_params, *since_params, *offset_params]
        return (f"GREATEST({elapsed}, INTERVAL '0')" if self.clamp else f"({elapsed})"), params


class DurationSum(_DurationExpression):
    """The sum of durations, in plain SQL on both backends."""

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any) -> SQL:
        parts, params = self._compile_all(compiler)
        return f"({' + '.join(parts)})", params

    as_postgresql = as_sqlite


def settled(
    temps: Operand = "temps_impute",
    since: Operand = "compte_jusqua",
    *,
    until: Operand | None = None,
    offset: Operand = timedelta(0),
    clamp: bool = True,
) -> DurationSum:
    """``temps`` plus the time elapsed since the mark (see ``Elapsed``): the stored value of a settled fiche."""
    return DurationSum(temps, Elapsed(since, until, offset, clamp))


def later_of(mark: Operand, until: Operand | None = None) -> Greatest:
    """The later of ``mark`` and ``until`` (the database's now): a mark never moves back."""
    return Greatest(_expr(mark), Now() if until is None else _expr(until))


def _expr(value: Operand) -> F | Expression:
    if isinstance(value, str):
        return F(value)
    if isinstance(value, timedelta):
        return Value(value, output_field=DurationField())
    return value


_NOW_SQL = {
    "sqlite": "SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'now')",
    "postgresql": "SELECT STATEMENT_TIMESTAMP()",
}


def db_now(using: str = "default") -> datetime:
    """Return the database's current time, as an aware UTC datetime."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(_NOW_SQL[connection.vendor])
        row = cursor.fetchone()
    assert row is not None
    value = row[0]
    if isinstance(value, str):  # SQLite's UTC text
        parsed = parse_datetime(value)
        assert parsed is not None
        value = parsed.replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value.astimezone(UTC)
