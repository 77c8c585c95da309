"""The API's reports: time per period, owner and project."""

from datetime import date, datetime
from typing import Any, Literal

from asgiref.sync import sync_to_async
from ninja import Field, Query, Router, Schema

from timesheet.domain import reports
from timesheet.web.api.common import ERRORS, Id, OwnerRef, ProjetRef

router = Router(tags=["reports"])


class ReportFilters(Schema):
    from_: date = Field(alias="from", description="First local day (YYYY-MM-DD).")
    to: date = Field(description="Last local day, included; at most 366 days after 'from'.")
    group: Literal["day", "week", "month"] = "day"
    by: str = Field("owner,projet", description="Comma-separated: owner, projet, both or neither.")
    owner: Id | None = Field(None, description="Staff: one owner's rows (default: everyone's).")


class ReportRow(Schema):
    period: str
    owner: OwnerRef | None = None
    projet: ProjetRef | None = None
    seconds: float
    rounded_seconds: float


class ReportTotals(Schema):
    seconds: float
    rounded_seconds: float


class RoundingRule(Schema):
    mode: str
    step_minutes: int


class ReportRounding(RoundingRule):
    scope: str
    projects: dict[str, RoundingRule]


class ReportOut(Schema):
    rows: list[ReportRow]
    totals: ReportTotals
    rounding: ReportRounding
    from_: str = Field(alias="from")
    to: str
    group: str
    by: list[str]
    server_time: datetime


def report_for(user: Any, filters: ReportFilters) -> dict[str, Any]:
    """The report ``filters`` ask for, of the rows ``user`` may see (sync: the rule may read permissions)."""
    request = reports.report_request(
        user=user, first=filters.from_, last=filters.to, group=filters.group, by=filters.by, owner_id=filters.owner
    )
    return reports.report_for(request)


@router.get(
    "/reports/",
    response={200: ReportOut, **ERRORS},
    by_alias=True,
    summary="Time per period (local days of each owner), owner and project, with totals and the rounding applied",
)
async def report(request, filters: Query[ReportFilters]):
    return await sync_to_async(report_for)(request.auth, filters)
