"""Reads shared by the API's list views: validated filters and pages."""

from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from .models import Etat, FicheTemps, sees_everyones_fiches
from .services import TransitionRefused


def fiche_list(*, user, etat: str | None = None, projet_id: int | None = None, owner_id: int | None = None):
    """The fiches ``user`` may see, with their live time, newest first, narrowed by the filters given."""
    fiches = FicheTemps.objects.visible_to(user).with_live_time().select_related("projet", "owner")
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

    @property
    def has_next(self):
        return self.number < self.pages

    @property
    def has_previous(self):
        return self.number > 1


def page(queryset: QuerySet, *, number: int, size: int) -> Page:
    """Page ``number`` (from 1) of ``queryset`` in pages of ``size``; refused as not_found past the last page."""
    count = queryset.count()
    pages = max(1, -(-count // size))
    if number > pages:
        raise TransitionRefused(f"Page {number} does not exist; there are {pages}.", code="not_found")
    start = (number - 1) * size
    return Page(items=list(queryset[start : start + size]), number=number, pages=pages, count=count)


apage = sync_to_async(page)  # the count and the rows in one trip to the database thread
