"""
Rounding of reported time, applied at report time only: the ledger is never
rounded.

One definition, ``Rule``, renders both forms: ``apply`` in Python (for a
day's or a group's total) and ``sql`` (for each stretch's piece, inside the
report's query). A value is rounded to a multiple of the step by adding a
bias before the integer division: the step less one for *up*, nothing for
*down*, half the step for *nearest*; negative values round as their
magnitude does.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import QuerySet

from timesheet.core import conf
from timesheet.models import Projet, Rounding

MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class Rule:
    mode: str
    step_minutes: int

    @property
    def step(self) -> int:
        """The step in microseconds; 0 when nothing is rounded."""
        return 0 if self.mode == Rounding.NONE else self.step_minutes * 60 * MICROSECONDS

    @property
    def bias(self) -> int:
        """What is added before dividing by the step."""
        step = self.step
        return {Rounding.UP: step - 1, Rounding.DOWN: 0}.get(Rounding(self.mode), step // 2)

    def apply(self, microseconds: int) -> int:
        """``microseconds`` rounded by this rule."""
        step = self.step
        if not step:
            return microseconds
        sign, value = (-1, -microseconds) if microseconds < 0 else (1, microseconds)
        return sign * ((value + self.bias) // step * step)

    def sql(self, column: str) -> str:
        """SQL rounding the non-negative integer ``column`` by this rule (integer division truncates)."""
        step = self.step
        if not step:
            return column
        return f"(({column} + {self.bias}) / {step}) * {step}"

    def describe(self) -> dict[str, str | int]:
        return {"mode": self.mode, "step_minutes": self.step_minutes}


def default_rule() -> Rule:
    """The site's rule (``REPORT_ROUNDING``, ``REPORT_ROUNDING_STEP_MINUTES``)."""
    return Rule(str(conf.get("REPORT_ROUNDING")), int(conf.get("REPORT_ROUNDING_STEP_MINUTES")))


def rules_query() -> "QuerySet[Projet, tuple[int, str, int | None]]":
    """The projects whose rounding differs from the default: (id, mode, step in minutes; "" or None: the default's)."""
    return Projet.objects.exclude(rounding="", rounding_step_minutes=None).values_list(
        "pk", "rounding", "rounding_step_minutes"
    )


def project_rules(rows: Iterable[tuple[int, str, int | None]] | None = None) -> dict[int, Rule]:
    """The projects whose rounding differs from the default, by id (from ``rows`` of ``rules_query`` when given)."""
    default = default_rule()
    rules = {}
    for pk, mode, step in rules_query() if rows is None else rows:
        rules[pk] = Rule(mode or default.mode, step if step is not None else default.step_minutes)
    return rules


def rules_sql(rules: dict[int, Rule], default: Rule, column: str, params: list[object]) -> str:
    """SQL rounding ``column`` by its row's ``projet_id``'s rule; the project ids are appended to ``params``."""
    if not rules:
        return default.sql(column)
    cases = []
    for projet_id, rule in rules.items():
        cases.append(f"WHEN %s THEN {rule.sql(column)}")
        params.append(projet_id)
    return f"(CASE projet_id {' '.join(cases)} ELSE {default.sql(column)} END)"
