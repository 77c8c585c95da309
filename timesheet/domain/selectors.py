"""Reads shared by the API's views: validated filters, pages, one fiche."""

from dataclasses import dataclass, replace
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from timesheet.core.dbtime import db_now
from timesheet.domain.fiches import TransitionRefused
from timesheet.domain.serialize import fiche_rows
from timesheet.models import Etat, FicheTemps, sees_everyones_fiches


def fiche_list(*, user, etat: str | None = None, projet_id: int | None = None, owner_id: int | None = None):
    """The fiches ``user`` may see, with their live time, newest first, narrowed by the filters given."""
    fiches = FicheTemps.objects.visible_to(user).with_live_time()
    if etat is not None:
        if etat not in Etat.values:
            raise TransitionRefused(f"'etat' must be one of {', '.join(Etat.values)}, got {etat!r}.", code="invalid")
        fiches = fiches.filter(etat=etat)
    if projet_id is not None:
        fiches = fiches.filter(projet_id=projet_id)
    if owner_id is not None:
        if owner_id != user.pk and not sees_everyones_fiches(user):
            raise TransitionRefused("Only staff may see other people's fiches.", code="forbidden")
        fiches = fiches.filter(owner_id=owner_id)
    return fiches.order_by("-created_at", "-id")


@dataclass(frozen=True)
class Page:
    items: list
    number: int
    pages: int
    count: int
    server_time: datetime | None = None  # the database's now the items were read at, when it was asked for

    @property
    def has_next(self):
        return self.number < self.pages

    @property
    def has_previous(self):
        return self.number > 1


def page(queryset: QuerySet, *, number: int, size: int, rows) -> Page:
    """
    Page ``number`` (from 1) of ``queryset`` in pages of ``size``, its items
    read through ``rows(queryset)`` (the count stays free of the joins
    ``rows`` may add); refused as not_found past the last page.
    """
    count = queryset.count()
    pages = max(1, -(-count // size))
    if number > pages:
        raise TransitionRefused(f"Page {number} does not exist; there are {pages}.", code="not_found")
    start = (number - 1) * size
    items = list(rows(queryset)[start : start + size])
    return Page(items=items, number=number, pages=pages, count=count)


def fiche_page(*, user, number: int, size: int, **filters) -> Page:
    """
    Page ``number`` of ``fiche_list(user=user, **filters)``, its items rows
    for ``row_json``, with the database's now their live time was computed for
    (read alone when the page is empty).
    """
    found = page(fiche_list(user=user, **filters), number=number, size=size, rows=fiche_rows)
    return replace(found, server_time=found.items[0]["db_now"] if found.items else db_now())


def fiche_row(*, user, fiche_id: int) -> dict:
    """Fiche ``fiche_id`` as a row for ``row_json``, if ``user`` may see it; else refused as not found."""
    try:
        return fiche_rows(FicheTemps.objects.with_live_time()).get_visible_to(user, pk=fiche_id)
    except FicheTemps.DoesNotExist:
        raise TransitionRefused(f"Fiche {fiche_id} does not exist.", code="not_found") from None


# Each in one trip to the database thread, where the user's permissions may be read when needed.
afiche_page = sync_to_async(fiche_page)
afiche_row = sync_to_async(fiche_row)
