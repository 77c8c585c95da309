"""
The budgets on a person's page: those of the projects they work on, live
(used, left, percent, the forecast of exhaustion, the thresholds crossed),
drawn again every few seconds through htmx (``/budgets``).
"""

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.template.response import TemplateResponse

from timesheet.domain import budgets
from timesheet.web.people.common import signed_in

TEMPLATE = "timesheet/people/_budgets.html"


def budgets_context(user: Any) -> dict[str, Any]:
    """The partial's context: the person's budgets, live, each with its bar's width and its level."""
    shown = []
    for live in budgets.seen_by_member(user):
        crossed = [threshold for threshold in live["thresholds"] if threshold["crossed_at"]]
        shown.append(
            {
                "live": live,
                "bar": min(100.0, live["percent"]),
                # Whole seconds of one reading, so that what is shown used and left adds up to the limit.
                "left_seconds": max(0, live["limit"] - int(live["used"])) if live["kind"] == "time" else None,
                "crossed": crossed,
                "level": "over" if live["percent"] >= 100 else ("warn" if crossed else "ok"),
            }
        )
    return {"budgets": shown}


@signed_in
async def budget_list(request: HttpRequest, user: Any) -> TemplateResponse:
    """The budgets region of the page, for its periodic refresh."""
    context = await sync_to_async(budgets_context)(user)
    return TemplateResponse(request, TEMPLATE, context)
