"""The API's fiches: list, detail, create, start, pause, finish, switch."""

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from ninja import Field, Query, Router, Schema

from timesheet.core import limits
from timesheet.domain import fiches, selectors
from timesheet.domain.serialize import fiche_json, iso, row_json
from timesheet.models import Etat
from timesheet.web.api.common import ERRORS, TRANSITION_ERRORS, Id, OwnerRef, ProjetRef, Strict, rendered

router = Router(tags=["fiches"])


class FicheOut(Schema):
    id: int
    projet: ProjetRef
    owner: OwnerRef
    libelle: str
    etat: Etat
    temps_impute: float = Field(description="Seconds settled in the database.")
    temps_live: float = Field(description="Seconds at server_time: settled plus the running part.")
    en_calcul_depuis: datetime | None
    compte_jusqua: datetime | None
    auto_stopped: bool
    created_at: datetime
    updated_at: datetime
    server_time: datetime = Field(description="The database's now when the fiche was read.")


class FichePage(Schema):
    count: int
    page: int
    pages: int
    next: str | None
    previous: str | None
    results: list[FicheOut]
    server_time: datetime


class FicheFilters(Schema):
    etat: Etat | None = None
    projet: Id | None = None
    owner: Id | None = None
    page: Id = 1
    page_size: int = Field(50, ge=1, le=200)


class FicheIn(Strict):
    projet: Id = Field(description="An active project's id.")
    libelle: str = Field("", max_length=limits.LABEL_MAX_LENGTH)
    start: bool = False
    started_at: Annotated[datetime | None, Field(strict=False)] = Field(
        None, description="With start: running as of this earlier instant (ISO 8601 with an offset), not now."
    )
    owner: Id | None = Field(None, description="Staff only: whose fiche it is (default: yours).")


class StartIn(Strict):
    at: Annotated[datetime | None, Field(strict=False)] = Field(
        None, description="Running as of this earlier instant, after your other time (ISO 8601 with an offset)."
    )


class StopIn(Strict):
    at: Annotated[datetime | None, Field(strict=False)] = Field(
        None, description="Stop at this earlier instant of the current stretch (ISO 8601 with an offset)."
    )


class SwitchIn(Strict):
    to: Id = Field(description="The paused fiche to start at the instant this one pauses.")


class SwitchOut(Schema):
    paused: FicheOut
    started: FicheOut


@router.get("/fiches/", response={200: FichePage, **ERRORS}, summary="Your fiches (staff: everyone's), newest first")
async def list_fiches(request, filters: Query[FicheFilters]):
    page = await selectors.afiche_page(
        user=request.auth,
        etat=filters.etat,
        projet_id=filters.projet,
        owner_id=filters.owner,
        number=filters.page,
        size=filters.page_size,
    )

    def link(number):
        return f"{request.path}?{urlencode({**request.GET.dict(), 'page': number})}"

    return rendered(
        request,
        {
            "count": page.count,
            "page": page.number,
            "pages": page.pages,
            "next": link(page.number + 1) if page.has_next else None,
            "previous": link(page.number - 1) if page.has_previous else None,
            "results": [row_json(row) for row in page.items],
            "server_time": iso(page.server_time),
        },
    )


@router.post(
    "/fiches/", response={201: FicheOut, **TRANSITION_ERRORS}, summary="Create a fiche, paused or started at once"
)
async def create_fiche(request, payload: FicheIn):
    fiche = await fiches.acreate_fiche(
        projet_id=payload.projet,
        owner_id=payload.owner,
        actor=request.auth,
        libelle=payload.libelle,
        start=payload.start,
        at=payload.started_at,
    )
    return rendered(request, fiche_json(fiche), status=201)


@router.get("/fiches/{id:fiche_id}/", response={200: FicheOut, **ERRORS}, summary="One fiche, with its live time")
async def fiche_detail(request, fiche_id: int):
    return rendered(request, row_json(await selectors.afiche_row(user=request.auth, fiche_id=fiche_id)))


@router.post(
    "/fiches/{id:fiche_id}/start",
    response={200: FicheOut, **TRANSITION_ERRORS},
    summary="Start a paused fiche, now or as of an earlier instant",
)
async def start_fiche(request, fiche_id: int, payload: StartIn | None = None):
    at = payload.at if payload else None
    return rendered(request, fiche_json(await fiches.astart_fiche(fiche_id=fiche_id, actor=request.auth, at=at)))


@router.post(
    "/fiches/{id:fiche_id}/pause",
    response={200: FicheOut, **TRANSITION_ERRORS},
    summary="Pause a running fiche, settling its time up to now or up to an earlier instant",
)
async def pause_fiche(request, fiche_id: int, payload: StopIn | None = None):
    at = payload.at if payload else None
    return rendered(request, fiche_json(await fiches.apause_fiche(fiche_id=fiche_id, actor=request.auth, at=at)))


@router.post(
    "/fiches/{id:fiche_id}/finish",
    response={200: FicheOut, **TRANSITION_ERRORS},
    summary="Finish a running (now or at an earlier instant) or paused fiche",
)
async def finish_fiche(request, fiche_id: int, payload: StopIn | None = None):
    at = payload.at if payload else None
    return rendered(request, fiche_json(await fiches.afinish_fiche(fiche_id=fiche_id, actor=request.auth, at=at)))


@router.post(
    "/fiches/{id:fiche_id}/switch",
    response={200: SwitchOut, **TRANSITION_ERRORS},
    summary="Pause this running fiche and start another at the same instant",
)
async def switch_fiche(request, fiche_id: int, payload: SwitchIn):
    paused, started = await fiches.aswitch_fiche(from_id=fiche_id, to_id=payload.to, actor=request.auth)
    return rendered(request, {"paused": fiche_json(paused), "started": fiche_json(started)})
