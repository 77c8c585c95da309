"""
Reads shared by the front ends: whose rows a user may read, validated
filters, pages, one fiche. The query rules themselves ("running", "visible to
this user", "with live time") are QuerySet methods on the models.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from timesheet.core.dbtime import db_now
from timesheet.domain.errors import Code, Refused
from timesheet.domain.serialize import fiche_rows
from timesheet.models import Etat, FicheTemps, sees_everyones_fiches


def owners_seen_by(user: Any, owner_id: int | None, refusal: str = "") -> list[int] | None:
    """
    The owners whose fiches or time ``user`` reads when asking for
    ``owner_id``'s (None: all they may see): None for everyone's, else a list
    of ids. Only those who see everyone's may name someone else; anyone else
    is refused as forbidden, with ``refusal`` (about fiches by default).
    """
    if sees_everyones_fiches(user):
        return None if owner_id is None else [owner_id]
    if owner_id not in (None, user.pk):
        raise Refused(refusal or _("Only staff may see other people's fiches."), code=Code.FORBIDDEN)
    return [user.pk]


def fiche_list(
    *, user: Any, etat: str | None = None, projet_id: int | None = None, owner_id: int | None = None
) -> "QuerySet[FicheTemps]":
    """The fiches ``user`` may see, with their live time, newest first, narrowed by the filters given."""
    fiches = FicheTemps.objects.visible_to(user).with_live_time()
    if etat is not None:
        if etat not in Etat.values:
            raise Refused(
                _("'etat' must be one of %(states)s, got %(etat)r.") % {"states": ", ".join(Etat.values), "etat": etat},
                code=Code.INVALID,
            )
        fiches = fiches.filter(etat=etat)
    if projet_id is not None:
        fiches = fiches.filter(projet_id=projet_id)
    if owner_id is not None:
        owners_seen_by(user, owner_id)
        fiches = fiches.filter(owner_id=owner_id)
    return fiches.order_by("-created_at", "-id")


@dataclass(frozen=True)
class Page:
    items: list[Any]
    number: int
    pages: int
    count: int
    server_time: datetime | None = None  # the database's now the items were read at, when it was asked for

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page(queryset: QuerySet[Any], *, number: int, size: int, rows: Callable[[Any], QuerySet[Any]]) -> Page:
    """
    Page ``number`` (from 1) of ``queryset`` in pages of ``size``, its items
    read through ``rows(queryset)`` (the count stays free of the joins
    ``rows`` may add); refused as not_found past the last page.
    """
    count = queryset.count()
    pages = max(1, -(-count // size))
    if number > pages:
        raise Refused(
            _("Page %(number)s does not exist; there are %(pages)s.") % {"number": number, "pages": pages},
            code=Code.NOT_FOUND,
        )
    start = (number - 1) * size
    items = list(rows(queryset)[start : start + size])
    return Page(items=items, number=number, pages=pages, count=count)


def fiche_page(*, user: Any, number: int, size: int, **filters: Any) -> Page:
    """
    Page ``number`` of ``fiche_list(user=user, **filters)``, its items rows
    for ``row_json``, with the database's now their live time was computed for
    (read alone when the page is empty).
    """
    found = page(fiche_list(user=user, **filters), number=number, size=size, rows=fiche_rows)
    return replace(found, server_time=found.items[0]["db_now"] if found.items else db_now())


def fiche_row(*, user: Any, fiche_id: int) -> dict[str, Any]:
    """Fiche ``fiche_id`` as a row for ``row_json``, if ``user`` may see it; else refused as not found."""
    try:
        row: dict[str, Any] = fiche_rows(FicheTemps.objects.with_live_time()).get_visible_to(user, pk=fiche_id)
    except FicheTemps.DoesNotExist:
        raise Refused(_("Fiche %(id)s does not exist.") % {"id": fiche_id}, code=Code.NOT_FOUND) from None
    return row


# Each in one trip to the database thread, where the user's permissions may be read when needed.
afiche_page = sync_to_async(fiche_page)
afiche_row = sync_to_async(fiche_row)
