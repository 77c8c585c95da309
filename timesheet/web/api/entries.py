"""
The API's time entries: each running stretch of a fiche, which its owner (or
staff with the permission to change fiches) adds, changes, splits and deletes.
"""

from datetime import date, datetime, timedelta
from typing import Annotated

from ninja import Field, Query, Router, Schema, Status

from timesheet.core import limits
from timesheet.domain import entries
from timesheet.domain.serialize import iso
from timesheet.web.api.common import ERRORS, TRANSITION_ERRORS, Id, ProjetRef, Strict

router = Router(tags=["entries"])

# An instant in a body: ISO 8601 text, with an offset.
Instant = Annotated[datetime, Field(strict=False)]


class EntryOut(Schema):
    id: int
    fiche: int = Field(description="The fiche whose stretch it is: its project and label are the fiche's.")
    projet: ProjetRef
    libelle: str
    start: datetime
    end: datetime | None = Field(description="None while the fiche runs.")
    seconds: float = Field(description="Its length in seconds (up to now while it runs).")


class EntryFilters(Schema):
    from_: date = Field(alias="from", description="First local day of the owner (YYYY-MM-DD).")
    to: date = Field(description="Last local day, included; at most 366 days after 'from'.")
    owner: Id | None = Field(None, description="Staff: whose entries (default: yours).")


class EntryIn(Strict):
    projet: Id = Field(description="An active project's id.")
    libelle: str = Field("", max_length=limits.LABEL_MAX_LENGTH)
    start: Instant | None = Field(None, description="With 'end': the entry's start (ISO 8601 with an offset).")
    end: Instant | None = None
    day: Annotated[date, Field(strict=False)] | None = Field(
        None, description="With 'seconds' instead of start and end: the owner's local day."
    )
    seconds: float | None = Field(
        None,
        gt=0,
        le=limits.ENTRY_MAX_LENGTH.total_seconds(),
        description="With 'day': how long; placed after the day's last entry.",
    )
    owner: Id | None = Field(None, description="Staff only: whose entry it is (default: yours).")


class EntryPatch(Strict):
    start: Instant | None = None
    end: Instant | None = Field(None, description="A finished entry's end (a running one ends when its fiche stops).")
    projet: Id | None = Field(
        None, description="Another active project: an entry among several moves to a fiche of its own."
    )
    libelle: str | None = Field(None, max_length=limits.LABEL_MAX_LENGTH)


class SplitIn(Strict):
    at: Instant = Field(description="An instant inside the entry.")


class SplitOut(Schema):
    first: EntryOut
    second: EntryOut


def entry_json(entry: entries.Entry) -> dict:
    return {
        "id": entry.id,
        "fiche": entry.fiche,
        "projet": {"id": entry.projet, "designation": entry.projet_name},
        "libelle": entry.libelle,
        "start": iso(entry.start),
        "end": iso(entry.end),
        "seconds": entry.seconds,
    }


@router.get(
    "/entries/", response={200: list[EntryOut], **ERRORS}, summary="Your entries with time in a range of local days"
)
async def list_entries(request, filters: Query[EntryFilters]):
    found = await entries.aentries_on(user=request.auth, first=filters.from_, last=filters.to, owner_id=filters.owner)
    return [entry_json(entry) for entry in found]


@router.post(
    "/entries/",
    response={201: EntryOut, **TRANSITION_ERRORS},
    summary="Add a finished entry: a start and an end, or a day and a duration",
)
async def add_entry(request, payload: EntryIn):
    entry = await entries.aadd_entry(
        actor=request.auth,
        projet_id=payload.projet,
        libelle=payload.libelle,
        start=payload.start,
        end=payload.end,
        day=payload.day,
        duration=None if payload.seconds is None else timedelta(seconds=payload.seconds),
        owner_id=payload.owner,
    )
    return Status(201, entry_json(entry))


@router.patch(
    "/entries/{id:entry_id}",
    response={200: EntryOut, **TRANSITION_ERRORS},
    summary="Change an entry's start, end, project or label",
)
async def change_entry(request, entry_id: int, payload: EntryPatch):
    entry = await entries.achange_entry(
        entry_id=entry_id,
        actor=request.auth,
        start=payload.start,
        end=payload.end,
        projet_id=payload.projet,
        libelle=payload.libelle,
    )
    return entry_json(entry)


@router.post(
    "/entries/{id:entry_id}/split",
    response={200: SplitOut, **TRANSITION_ERRORS},
    summary="Split an entry in two at an instant inside it",
)
async def split_entry(request, entry_id: int, payload: SplitIn):
    first, second = await entries.asplit_entry(entry_id=entry_id, actor=request.auth, at=payload.at)
    return {"first": entry_json(first), "second": entry_json(second)}


@router.delete(
    "/entries/{id:entry_id}",
    response={204: None, **TRANSITION_ERRORS},
    summary="Delete an entry and its time (a running one: its fiche pauses)",
)
async def delete_entry(request, entry_id: int):
    await entries.adelete_entry(entry_id=entry_id, actor=request.auth)
    return Status(204, None)
