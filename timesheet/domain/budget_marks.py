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
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from timesheet.domain.errors import Code, Refused
from timesheet.models import Budget, BudgetCrossing, Projet


def touch(projet_ids: Iterable[int | None]) -> None:
    """Mark the budgets of these projects and of their clients as changed (a budget already marked is left as it is)."""
    ids = sorted({pk for pk in projet_ids if pk is not None})
    if not ids:
        return
    clients = Projet.objects.filter(pk__in=ids, client__isnull=False).values("client_id")
    # Only unmarked rows are written: a busy project's budget row is not rewritten by every transition.
    Budget.objects.filter(Q(projet_id__in=ids) | Q(client_id__in=clients), dirty_since__isnull=True).update(
        dirty_since=Now()
    )


def touch_money() -> None:
    """Mark every money budget as changed: a rate was added or withdrawn."""
    Budget.objects.filter(kind=Budget.Kind.MONEY, dirty_since__isnull=True).update(dirty_since=Now())


def touch_all() -> None:
    """Mark every budget as changed (a project moved to another client, its billing changed)."""
    Budget.objects.filter(dirty_since__isnull=True).update(dirty_since=Now())


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
        raise Refused(
            _("The budget of project %(id)s is used up: its fiches cannot run.") % {"id": projet_id},
            code=Code.BUDGET_EXHAUSTED,
        )
