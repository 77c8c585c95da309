"""
What a change to a project's time asks of its budgets: the marks that make
the ticker compute a budget again (every change marks the budgets that count
it, in the same transaction as the change, so that no change is missed and
an unchanged budget costs a tick nothing), and the refusal of a new run on a
project whose *stop at 100 %* budget is used up.
"""

from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, F, OuterRef, Q
from django.utils.translation import gettext as _

from timesheet.core.prepared import Prepared
from timesheet.domain.errors import Code, Refused
from timesheet.models import Budget, BudgetCrossing, BudgetMark, Projet


def _mark(budgets: Any) -> None:
    """A mark on each budget of ``budgets`` (a queryset): one read, then one insert when there is any."""
    _mark_ids(list(budgets.values_list("pk", flat=True)))


def _mark_ids(ids: list[int]) -> None:
    if ids:
        BudgetMark.objects.bulk_create(BudgetMark(budget_id=pk) for pk in ids)


def _counting(projets: Any) -> Any:
    """The budgets the time of ``projets`` (a queryset of projects) counts in: theirs and their clients'."""
    return Budget.objects.filter(Q(projet__in=projets) | Q(client__in=projets.values("client_id")))


# One project's budgets, prepared once: nearly every change of a fiche's time marks them.
_ONE_PROJETS = Prepared(lambda projet: _counting(Projet.objects.filter(pk=projet)).values("pk"), "projet")


def touch(projet_ids: Iterable[int | None]) -> None:
    """Mark the budgets of these projects and of their clients as changed."""
    ids = sorted({pk for pk in projet_ids if pk is not None})
    if len(ids) == 1:
        _mark_ids([row["pk"] for row in _ONE_PROJETS.rows(projet=ids[0])])
    elif ids:
        _mark(_counting(Projet.objects.filter(pk__in=ids)))


def touch_money() -> None:
    """Mark every money budget as changed: a rate was added or withdrawn."""
    _mark(Budget.objects.filter(kind=Budget.Kind.MONEY))


def touch_all() -> None:
    """Mark every budget as changed (a project moved to another client, its billing changed)."""
    _mark(Budget.objects.all())


def exhausted_stop() -> Any:
    """
    A filter on projects: those a *stop at 100 %* budget (their own or their
    client's) stops, used up in its current period (as the last check saw it).
    """
    crossed = BudgetCrossing.objects.filter(
        percent=100,
        crossed_at__isnull=False,
        budget__action=Budget.Action.STOP,
        period_key=F("budget__period_key"),
    )
    return Exists(crossed.filter(budget__projet_id=OuterRef("pk"))) | Exists(
        crossed.filter(budget__client_id=OuterRef("client_id"))
    )


def refuse_if_exhausted(projet_id: int) -> None:
    """Refuse, as ``budget_exhausted``, time on a project whose *stop at 100 %* budget is used up."""
    refuse_used_up(projet_id, Projet.objects.filter(exhausted_stop(), pk=projet_id).exists())


def used_up(projet_ref: str = "projet_id") -> Exists:
    """Whether the project ``projet_ref`` names (a column of the outer query) is stopped by a used-up budget."""
    return Exists(Projet.objects.filter(exhausted_stop(), pk=OuterRef(projet_ref)))


def refuse_used_up(projet_id: int, used: bool) -> None:
    """Refuse, as ``budget_exhausted``, a new run on the project when ``used`` (read with ``used_up``)."""
    if used:
        name = Projet.objects.filter(pk=projet_id).values_list("designation", flat=True).first() or projet_id
        raise Refused(
            _("The budget of “%(projet)s” is used up: its fiches cannot run.") % {"projet": name},
            code=Code.BUDGET_EXHAUSTED,
        )
