"""
The API's projects: the ones a person may charge time to, for scripts that
need an id, with their client and whether they are billable. A project
restricted to teams the person is not a member of does not exist for them
(``Projet.objects.open_to``, the one rule of teams).
"""

from typing import Any

from django.db.models import F
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema

from timesheet.domain.errors import Code, Refused
from timesheet.models import Projet, ProjetQuerySet
from timesheet.web.api.common import ERRORS

router = Router(tags=["projets"])


class ClientRef(Schema):
    id: int
    name: str


class ProjetOut(Schema):
    id: int
    designation: str
    client: ClientRef | None = Field(description="Whom the project is done for; null for none.")
    billable: bool = Field(description="Whether its time is priced at the hourly rates.")


COLUMNS = ("id", "designation", "billable", "client_id")


def _rows(projets: ProjetQuerySet) -> Any:
    return projets.values(*COLUMNS, client_name=F("client__name"))


def projet_json(row: dict[str, Any]) -> dict[str, Any]:
    client = None if row["client_id"] is None else {"id": row["client_id"], "name": row["client_name"]}
    return {"id": row["id"], "designation": row["designation"], "client": client, "billable": row["billable"]}


@router.get("/projets/", response={200: list[ProjetOut], **ERRORS}, summary="The projects you may charge time to")
async def list_projets(request):
    projets = _rows(Projet.objects.usable_by(request.auth).order_by("designation", "id"))
    return [projet_json(row) async for row in projets]


@router.get(
    "/projets/{id:projet_id}/",
    response={200: ProjetOut, **ERRORS},
    summary="One project open to you (a deactivated one included)",
)
async def projet_detail(request, projet_id: int):
    row = await _rows(Projet.objects.open_to(request.auth).filter(pk=projet_id)).afirst()
    if row is None:  # as a project that does not exist: a restricted one is not revealed
        raise Refused(_("Project %(id)s does not exist.") % {"id": projet_id}, code=Code.NOT_FOUND)
    return projet_json(row)
