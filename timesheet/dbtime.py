"""
Time arithmetic on the database's clock.

Django's generic date arithmetic on SQLite calls back into Python for every
row; the expression here compiles to plain SQL on both supported backends, so
a tick over many rows is as fast as a hand-written UPDATE, and it is exact:
integer microseconds on SQLite (whose clock has millisecond resolution, so
every mark is a whole millisecond), intervals on PostgreSQL.
"""

from datetime import timedelta

from django.db import NotSupportedError
from django.db.models import DurationField, Expression, F, Value
from django.db.models.functions import Greatest, Now


class Accrued(Expression):
    """
    ``temps`` plus the time from ``since`` to ``until`` (database now by
    default) plus ``offset``, never less than ``temps``: a clock that is behind
    the mark adds nothing rather than removing time.
    """

    output_field = DurationField()

    def __init__(self, temps, since, until=None, offset=timedelta(0)):
        super().__init__()
        self.temps = _expr(temps)
        self.since = _expr(since)
        self.until = Now() if until is None else _expr(until)
        self.offset = Value(offset, output_field=DurationField())

    def get_source_expressions(self):
        return [self.temps, self.since, self.until, self.offset]

    def set_source_expressions(self, exprs):
        self.temps, self.since, self.until, self.offset = exprs

    def _compile_all(self, compiler):
        parts, params = [], []
        for expression in self.get_source_expressions():
            sql, expression_params = compiler.compile(expression)
            parts.append(sql)
            params.extend(expression_params)
        return parts, params

    def as_sqlite(self, compiler, connection, **extra_context):
        (temps, since, until, offset), params = self._compile_all(compiler)
        # julianday() is a double of days; its error (~40 us at today's dates)
        # is far below half a millisecond, so rounding to whole milliseconds
        # recovers the exact difference of two millisecond instants.
        elapsed = f"CAST(ROUND((julianday({until}) - julianday({since})) * 86400000.0) AS INTEGER) * 1000"
        return f"({temps} + MAX(0, {elapsed} + {offset}))", params

    def as_postgresql(self, compiler, connection, **extra_context):
        (temps, since, until, offset), params = self._compile_all(compiler)
        return f"({temps} + GREATEST({until} - {since} + {offset}::interval, INTERVAL '0'))", params

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"Time accounting supports SQLite and PostgreSQL, not {connection.vendor}.")


def _expr(value):
    return F(value) if isinstance(value, str) else value


def later_of(mark, until=None):
    """The later of ``mark`` and ``until`` (database now): a mark never moves back."""
    return Greatest(_expr(mark), Now() if until is None else until)
