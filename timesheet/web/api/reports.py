"""The API's reports: time per period, owner, client and project, and what the billable time is worth."""

from datetime import date, datetime
from typing import Any, Literal

from asgiref.sync import sync_to_async
from ninja import Field, Query, Router, Schema

from timesheet.domain import reports
from timesheet.web.api.common import ERRORS, Id, OwnerRef, ProjetRef, rendered

router = Router(tags=["reports"])


class ReportFilters(Schema):
    from_: date = Field(alias="from", description="First local day (YYYY-MM-DD).")
    to: date = Field(description="Last local day, included; at most 366 days after 'from'.")
    group: Literal["day", "week", "month"] = "day"
    by: str = Field(
        "owner,projet",
        description="Comma-separated dimensions of the rows: owner, client, projet, any of them or none.",
    )
    owner: Id | None = Field(None, description="Staff: one owner's rows (default: everyone's).")
    approved: bool = Field(False, description="Only the time of approved weeks (for payroll and billing).")


class ClientRef(Schema):
    id: int | None = Field(description="None for the projects of no client.")
    name: str


AMOUNT = (
    "What the billable time is worth in 'currency', a decimal string: each (day, owner, project) "
    "rounded half up to the minor unit once, every coarser row and the totals sums of those; "
    "of the exact time, whatever the time's rounding."
)


class ReportRow(Schema):
    period: str
    owner: OwnerRef | None = None
    client: ClientRef | None = Field(None, description="With by=client.")
    projet: ProjetRef | None = None
    seconds: float
    rounded_seconds: float
    billable_seconds: float = Field(description="The time of billable projects (exact).")
    amount: str = Field(description=AMOUNT)


class ReportTotals(Schema):
    seconds: float
    rounded_seconds: float
    billable_seconds: float
    amount: str = Field(description=AMOUNT)


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
    currency: str = Field(description="The currency of the amounts (ISO 4217, the site's CURRENCY).")
    from_: str = Field(alias="from")
    to: str
    group: str
    by: list[str]
    approved: bool = Field(description="Whether only the time of approved weeks is counted.")
    server_time: datetime


def report_for(user: Any, filters: ReportFilters) -> dict[str, Any]:
    """The report ``filters`` ask for, of the rows ``user`` may see, in ``ReportOut``'s shape (sync: reads rights)."""
    request = reports.report_request(
        user=user,
        first=filters.from_,
        last=filters.to,
        group=filters.group,
        by=filters.by,
        owner_id=filters.owner,
        approved=filters.approved,
    )
    return report_json(reports.report_for(request))


def report_json(report: dict[str, Any]) -> dict[str, Any]:
    """
    ``report`` as ``ReportOut`` gives it: each row with its owner, client and
    projet (None where they are not dimensions), in the schema's order; the
    rest is already in its shape.
    """
    report["rows"] = [
        {
            "period": row["period"],
            "owner": row.get("owner"),
            "client": row.get("client"),
            "projet": row.get("projet"),
            "seconds": row["seconds"],
            "rounded_seconds": row["rounded_seconds"],
            "billable_seconds": row["billable_seconds"],
            "amount": row["amount"],
        }
        for row in report["rows"]
    ]
    return report


@router.get(
    "/reports/",
    response={200: ReportOut, **ERRORS},
    by_alias=True,
    summary=(
        "Time per period (local days of each owner), owner, client and project, with billable time,"
        " amounts, totals and the rounding applied"
    ),
)
async def report(request, filters: Query[ReportFilters]):
    # Built in ReportOut's shape (``report_json``) and rendered as it is: Ninja would validate every row
    # again, a fifth of a small report's time; a test holds the shape to the schema's.
    return rendered(request, await sync_to_async(report_for)(request.auth, filters))
