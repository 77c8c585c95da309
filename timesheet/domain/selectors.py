"""
Reads shared by the front ends: whose rows a user may read, validated
filters, pages, one fiche. The query rules themselves ("running", "visible to
this user", "with live time") are QuerySet methods on the models.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Count, QuerySet, Value
from django.utils.translation import gettext as _

from timesheet.core.dbtime import db_now
from timesheet.core.prepared import Prepared
from timesheet.domain.errors import Code, Refused
from timesheet.domain.serialize import fiche_rows
from timesheet.models import Etat, FicheTemps, FicheTempsQuerySet, sees_everyones_fiches, stand_in, visible_row


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


def _checked_filters(user: Any, etat: str | None, owner_id: int | None) -> None:
    """Refuse filters ``user`` may not give: an unknown state, someone else's fiches without seeing everyone's."""
    if etat is not None and etat not in Etat.values:
        raise Refused(
            _("'etat' must be one of %(states)s, got %(etat)r.") % {"states": ", ".join(Etat.values), "etat": etat},
            code=Code.INVALID,
        )
    if owner_id is not None:
        owners_seen_by(user, owner_id)


def _narrowed(
    fiches: FicheTempsQuerySet, etat: str | None, projet_id: int | None, owner_id: int | None
) -> FicheTempsQuerySet:
    if etat is not None:
        fiches = fiches.filter(etat=etat)
    if projet_id is not None:
        fiches = fiches.filter(projet_id=projet_id)
    if owner_id is not None:
        fiches = fiches.filter(owner_id=owner_id)
    return fiches.order_by("-created_at", "-id")


def fiche_list(
    *, user: Any, etat: str | None = None, projet_id: int | None = None, owner_id: int | None = None
) -> "QuerySet[FicheTemps]":
    """The fiches ``user`` may see, with their live time, newest first, narrowed by the filters given."""
    _checked_filters(user, etat, owner_id)
    return _narrowed(FicheTemps.objects.visible_to(user).with_live_time(), etat, projet_id, owner_id)


@functools.cache
def _page_reads(sees_everyones: bool, filters: tuple[str, ...]) -> tuple[Prepared, Prepared]:
    """
    The count and the rows of ``fiche_list`` for a person who does or does
    not see everyone's, narrowed by ``filters`` (of etat, projet_id,
    owner_id), prepared once: every page of the API's list reads them.
    """

    def listed(user: int = 0, **values: Any) -> FicheTempsQuerySet:
        # visible_to() of one who sees everyone's is every fiche: no person's id in that read.
        fiches = FicheTemps.objects.all() if sees_everyones else FicheTemps.objects.visible_to(stand_in(user))
        return _narrowed(fiches, **{name: values.get(name) for name in _FILTERS})

    def count(**values: Any) -> "QuerySet[Any]":
        # Grouped by a constant, which Django leaves out: one row, the count of the whole.
        return listed(**values).order_by().annotate(all=Value(1)).values("all").annotate(n=Count("pk")).values("n")

    def rows(**values: Any) -> "QuerySet[Any]":
        return fiche_rows(listed(**values).with_live_time())

    params = filters if sees_everyones else ("user", *filters)
    text = ("etat",) if "etat" in filters else ()
    return Prepared(count, *params, text=text), Prepared(rows, *params, text=text)


_FILTERS = ("etat", "projet_id", "owner_id")


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


def _pages(count: int, number: int, size: int) -> int:
    """How many pages of ``size`` ``count`` items make; refused as not_found if ``number`` is past the last."""
    pages = max(1, -(-count // size))
    if number > pages:
        raise Refused(
            _("Page %(number)s does not exist; there are %(pages)s.") % {"number": number, "pages": pages},
            code=Code.NOT_FOUND,
        )
    return pages


def page(queryset: QuerySet[Any], *, number: int, size: int, rows: Callable[[Any], QuerySet[Any]]) -> Page:
    """
    Page ``number`` (from 1) of ``queryset`` in pages of ``size``, its items
    read through ``rows(queryset)`` (the count stays free of the joins
    ``rows`` may add); refused as not_found past the last page.
    """
    count = queryset.count()
    pages = _pages(count, number, size)
    start = (number - 1) * size
    items = list(rows(queryset)[start : start + size])
    return Page(items=items, number=number, pages=pages, count=count)


def fiche_page(
    *,
    user: Any,
    number: int,
    size: int,
    etat: str | None = None,
    projet_id: int | None = None,
    owner_id: int | None = None,
) -> Page:
    """
    Page ``number`` of ``fiche_list(user=user, **filters)``, its items rows
    for ``row_json``, with the database's now their live time was computed for
    (read alone when the page is empty); refused as not_found past the last page.
    """
    if not (user.is_authenticated and user.is_active):  # nothing to see: not worth a prepared read
        found = page(
            fiche_list(user=user, etat=etat, projet_id=projet_id, owner_id=owner_id),
            number=number,
            size=size,
            rows=fiche_rows,
        )
        return replace(found, server_time=db_now())
    _checked_filters(user, etat, owner_id)
    values: dict[str, Any] = {
        name: value for name, value in zip(_FILTERS, (etat, projet_id, owner_id), strict=True) if value is not None
    }
    counting, reading = _page_reads(sees_everyones_fiches(user), tuple(values))
    counted = counting.one(user=user.pk, **values)
    count = counted["n"] if counted else 0
    pages = _pages(count, number, size)
    items = reading.rows(user=user.pk, limit=size, offset=(number - 1) * size, **values)
    return Page(
        items=items,
        number=number,
        pages=pages,
        count=count,
        server_time=items[0]["db_now"] if items else db_now(),
    )


def fiche_row(*, user: Any, fiche_id: int) -> dict[str, Any]:
    """Fiche ``fiche_id`` as a row for ``row_json``, if ``user`` may see it; else refused as not found."""
    row = visible_row(user, _OWN_ROW, _ANY_ROW, fiche_id=fiche_id)
    if row is None:
        raise Refused(_("Fiche %(id)s does not exist.") % {"id": fiche_id}, code=Code.NOT_FOUND)
    return row


# One fiche as a row for ``row_json``: among the person's own, and among everyone's.
_OWN_ROW = Prepared(
    lambda user, fiche_id: fiche_rows(FicheTemps.objects.with_live_time().owned_by(stand_in(user)).filter(pk=fiche_id)),
    "user",
    "fiche_id",
)
_ANY_ROW = Prepared(lambda fiche_id: fiche_rows(FicheTemps.objects.with_live_time().filter(pk=fiche_id)), "fiche_id")


# Each in one trip to the database thread, where the user's permissions may be read when needed.
afiche_page = sync_to_async(fiche_page)
afiche_row = sync_to_async(fiche_row)
