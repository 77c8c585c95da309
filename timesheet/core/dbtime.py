"""
Time arithmetic on the database's clock.

Django's generic duration arithmetic on SQLite calls back into Python for
every row; the expressions here compile to plain SQL on both supported
backends, so a tick over many rows is as fast as a hand-written UPDATE, and
they are exact: integer microseconds on SQLite (whose clock has millisecond
resolution, so every mark is a whole millisecond), intervals on PostgreSQL.
"""

from datetime import UTC, timedelta

from django.db import NotSupportedError, connections
from django.db.models import DurationField, Expression, F, Value
from django.db.models.functions import Greatest, Now
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


class _DurationExpression(Expression):
    output_field = DurationField()

    def __init__(self, *expressions):
        super().__init__()
        self.expressions = [_expr(expression) for expression in expressions]

    def get_source_expressions(self):
        return self.expressions

    def set_source_expressions(self, expressions):
        self.expressions = expressions

    def _compile_all(self, compiler):
        parts, params = [], []
        for expression in self.expressions:
            sql, expression_params = compiler.compile(expression)
            parts.append(sql)
            params.extend(expression_params)
        return parts, params

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"Time accounting supports SQLite and PostgreSQL, not {connection.vendor}.")


class Elapsed(_DurationExpression):
    """
    The time from ``since`` to ``until`` (the database's now by default), plus
    ``offset``, or zero if that is negative: a clock behind the mark never
    takes time back. With ``clamp=False`` a negative difference is kept (a
    stop at an instant before the mark takes the time after it back).
    """

    def __init__(self, since, until=None, offset=timedelta(0), clamp=True):
        super().__init__(since, Now() if until is None else until, offset)
        self.clamp = clamp

    def as_sqlite(self, compiler, connection, **extra_context):
        (since, until, offset), params = self._compile_all(compiler)
        if isinstance(self.expressions[1], Now):
            until = "'now'"  # julianday('now') skips formatting and parsing the instant on every row
        elapsed = f"{sqlite_exact_microseconds(f'julianday({until})', f'julianday({since})')} + {offset}"
        return (f"MAX(0, {elapsed})" if self.clamp else f"({elapsed})"), params

    def as_postgresql(self, compiler, connection, **extra_context):
        (since, until, offset), params = self._compile_all(compiler)
        elapsed = f"{until} - {since} + {offset}::interval"
        return (f"GREATEST({elapsed}, INTERVAL '0')" if self.clamp else f"({elapsed})"), params


class DurationSum(_DurationExpression):
    """The sum of durations, in plain SQL on both backends."""

    def as_sqlite(self, compiler, connection, **extra_context):
        parts, params = self._compile_all(compiler)
        return f"({' + '.join(parts)})", params

    as_postgresql = as_sqlite


def settled(temps="temps_impute", since="compte_jusqua", **elapsed):
    """``temps`` plus the time elapsed since the mark: the stored value of a settled fiche."""
    return DurationSum(temps, Elapsed(since, **elapsed))


def later_of(mark, until=None):
    """The later of ``mark`` and ``until`` (the database's now): a mark never moves back."""
    return Greatest(_expr(mark), Now() if until is None else until)


def _expr(value):
    if isinstance(value, str):
        return F(value)
    if isinstance(value, timedelta):
        return Value(value, output_field=DurationField())
    return value


_NOW_SQL = {
    "sqlite": "SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'now')",
    "postgresql": "SELECT STATEMENT_TIMESTAMP()",
}


def db_now(using="default"):
    """Return the database's current time, as an aware UTC datetime."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(_NOW_SQL[connection.vendor])
        value = cursor.fetchone()[0]
    if isinstance(value, str):  # SQLite's UTC text
        value = parse_datetime(value).replace(tzinfo=UTC)
    return value.astimezone(UTC)
