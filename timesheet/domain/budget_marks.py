"""
The marks that make the ticker compute a budget again: every change to a
project's time marks the budgets that count it, in the same transaction as
the change, so that no change is missed and an unchanged budget costs a
tick nothing.
"""

from collections.abc import Iterable

from django.db.models import Q
from django.db.models.functions import Now

from timesheet.models import Budget, Projet


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
