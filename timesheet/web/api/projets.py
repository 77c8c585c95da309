"""
The API's projects: the ones a person may charge time to, for scripts that
need an id, with their client and whether they are billable. A project
restricted to teams the person is not a member of does not exist for them
(``Projet.objects.open_to``, the one rule of teams).
"""

from datetime import datetime
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.db.models import F
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema

from timesheet.domain import budgets
from timesheet.domain.errors import Code, Refused
from timesheet.models import Projet, ProjetQuerySet
from timesheet.web.api.common import ERRORS

router = Router(tags=["projets"])


class ClientRef(Schema):
    id: int
    name: str


class ThresholdOut(Schema):
    percent: int
    crossed_at: datetime | None = Field(description="The instant the ledger reached it in this period; null: armed.")


class BudgetOut(Schema):
    kind: Literal["time", "money"]
    period: Literal["total", "month"] = Field(description="The whole life, or each calendar month in the site's zone.")
    period_key: str = Field(description='"" for the whole life, "YYYY-MM" for this month.')
    limit: int | str = Field(description="Seconds for time; a decimal string of the currency for money.")
    used: float | str = Field(description="Used now (its running fiches counted up to now), as the limit.")
    left: float | str
    percent: float
    currency: str | None = Field(description="The site's CURRENCY for money; null for time.")
    action: Literal["alert", "stop"] = Field(description="stop: its running fiches are paused when it is used up.")
    thresholds: list[ThresholdOut]
    exhausted_forecast_at: datetime | None = Field(
        description="At the pace of its running fiches, the instant it will be used up; null when none run."
    )


class ProjetOut(Schema):
    id: int
    designation: str
    client: ClientRef | None = Field(description="Whom the project is done for; null for none.")
    billable: bool = Field(description="Whether its time is priced at the hourly rates.")
    budget: BudgetOut | None = Field(description="The budget that counts its time (its own, else its client's).")


COLUMNS = ("id", "designation", "billable", "client_id")


def _rows(projets: ProjetQuerySet) -> Any:
    return projets.values(*COLUMNS, client_name=F("client__name"))


def projet_json(row: dict[str, Any], budget: dict[str, Any] | None) -> dict[str, Any]:
    client = None if row["client_id"] is None else {"id": row["client_id"], "name": row["client_name"]}
    return {
        "id": row["id"],
        "designation": row["designation"],
        "client": client,
        "billable": row["billable"],
        "budget": budget,
    }


async def with_budgets(rows: list[dict[str, Any]], viewer: Any) -> list[dict[str, Any]]:
    """The projects as the API shows them to ``viewer``, each with its live budget (read in one pass for all)."""
    ids = [row["id"] for row in rows]
    shown = await sync_to_async(budgets.live_for_projets)(ids, viewer=viewer) if rows else {}
    return [projet_json(row, shown.get(row["id"])) for row in rows]


@router.get("/projets/", response={200: list[ProjetOut], **ERRORS}, summary="The projects you may charge time to")
async def list_projets(request):
    projets = _rows(Projet.objects.usable_by(request.auth).order_by("designation", "id"))
    return await with_budgets([row async for row in projets], request.auth)


@router.get(
    "/projets/{id:projet_id}/",
    response={200: ProjetOut, **ERRORS},
    summary="One project open to you (a deactivated one included)",
)
async def projet_detail(request, projet_id: int):
    row = await _rows(Projet.objects.open_to(request.auth).filter(pk=projet_id)).afirst()
    if row is None:  # as a project that does not exist: a restricted one is not revealed
        raise Refused(_("Project %(id)s does not exist.") % {"id": projet_id}, code=Code.NOT_FOUND)
    return (await with_budgets([row], request.auth))[0]
