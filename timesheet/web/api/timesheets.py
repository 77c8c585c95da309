"""
The API's weekly time sheets: a person's weeks with their state (open,
submitted, approved, rejected) and time; the person submits and withdraws
their week, the leads of their teams and approvers approve or reject it
(``timesheet.domain.timesheets``, where every rule lives).
"""

import re
from datetime import date, datetime
from typing import Annotated, Any

from ninja import Field, Path, Query, Router, Schema
from pydantic import BeforeValidator, WithJsonSchema

from timesheet.domain import timesheets
from timesheet.models import WeekSheet
from timesheet.web.api.common import ERRORS, TRANSITION_ERRORS, Id, Strict

router = Router(tags=["timesheets"])

WEEK = "The week's name: the ISO week that holds most of its days (\"2026-W49\"), in the owner's weeks."
# A week's name in a path. Its pattern is stated, not checked here: the rules refuse anything else, and a name
# of no week ("2026-W99"), as invalid (400 with the code "invalid", which a pydantic refusal would not carry).
WeekName = Annotated[
    str,
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{4}-W[0-9]{2}$"}),
    Path(description=WEEK, examples=["2026-W49"]),
]
OwnerId = Annotated[int, Path(description="The week's owner: a person's id.")]


def _iso_day(value: Any) -> Any:
    """A day is written YYYY-MM-DD: pydantic would take a number for a Unix time ("to=0": 1 January 1970)."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("write the day as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]


class WeekOut(Schema):
    owner: int = Field(description="The person whose week it is (their id).")
    week: str = Field(description=WEEK)
    first_day: date = Field(description="Its first local day (the owner's first day of the week, Monday by default).")
    state: WeekSheet.State = Field(description="open (never submitted, or withdrawn), submitted, approved or rejected.")
    seconds: float = Field(
        description="Its time: as submitted while it is submitted or approved; otherwise up to now (live)."
    )
    submitted_at: datetime | None = Field(
        description="When it was submitted, while submitted or decided; null if open (never submitted or withdrawn)."
    )
    submissions: int = Field(
        description="How many times it was submitted: name it when deciding, so as to decide what you looked at."
    )
    decided_at: datetime | None = Field(description="When it was last approved or rejected; null if not decided.")
    decided_by: int | None = Field(description="Who approved or rejected it (their id); null if not decided.")
    reason: str = Field(description='Why it was rejected; "" otherwise.')


class WeekFilters(Schema):
    owner: Id | None = Field(
        None,
        description=(
            "Whose weeks: every one of theirs, open ones included (yours, your teams' members' if you lead"
            " them, anyone's for approvers). Without it: the weeks ever submitted that you may see."
        ),
    )
    from_: Day | None = Field(
        None,
        alias="from",
        description="The weeks whose first day is from this day (YYYY-MM-DD); with owner, 8 weeks back by default.",
    )
    to: Day | None = Field(
        None, description="Up to this day, included; with owner, at most 106 weeks after 'from' (default: today)."
    )
    state: str | None = Field(None, description="Only the weeks in this state: open, submitted, approved or rejected.")


class NoFields(Strict):
    """A body with nothing in it (or none at all): any field is refused."""


class DecideIn(Strict):
    submission: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description=(
            "The submission you looked at (the week's `submissions`): refused with 409 `wrong_state` if the week"
            " was withdrawn and submitted again since."
        ),
    )


class RejectIn(DecideIn):
    reason: str = Field(
        max_length=timesheets.REASON_MAX_LENGTH, description="Why: told to the person, who mends and submits again."
    )


def sheet_json(sheet: WeekSheet) -> dict[str, Any]:
    """A week's row after a transition: its time is the one submitted, which nothing changed since."""
    return {
        "owner": sheet.owner_id,
        "week": sheet.week,
        "first_day": sheet.first_day,
        "state": sheet.state,
        "seconds": sheet.microseconds / timesheets.MICROSECONDS,
        "submitted_at": sheet.submitted_at,
        "submissions": sheet.submissions,
        "decided_at": sheet.decided_at,
        "decided_by": sheet.decided_by_id,
        "reason": sheet.reason,
    }


@router.get(
    "/timesheets/",
    response={200: list[WeekOut], **ERRORS},
    summary="Weekly time sheets: one person's weeks, or the submitted ones you may see",
    description=(
        "With `owner`: every week of that person whose first day is from `from` to `to`, newest first, open ones"
        " included, with their live time (403 `forbidden` for someone whose weeks you may not see). Without it:"
        " the weeks ever submitted that you may see (your own, your teams' members' if you lead them, everyone's"
        " with the permission to approve), newest first. `state` keeps the weeks in that state."
    ),
)
async def list_timesheets(request, filters: Query[WeekFilters]):
    state = timesheets.check_state(filters.state)
    if filters.owner is None:
        return await timesheets.avisible_sheets(actor=request.auth, first=filters.from_, last=filters.to, state=state)
    weeks = await timesheets.aweeks_of(actor=request.auth, owner_id=filters.owner, first=filters.from_, last=filters.to)
    return [week for week in weeks if state is None or week["state"] == state]


@router.post(
    "/timesheets/{id:owner_id}/{week}/submit",
    response={200: WeekOut, **TRANSITION_ERRORS},
    summary="Submit your week for approval",
    description=(
        "Only its owner submits a week (403 `forbidden`), once it has begun and, before it ends, with nothing of"
        " theirs running in it (409 `wrong_state`, with `running_fiche_id`). A submitted or approved week, or one"
        " sharing days with such a week, is refused (409 `wrong_state`). While it is submitted no change to its"
        " time is accepted (409 `submitted`). The leads of the owner's teams and approvers are notified."
    ),
)
async def submit_week(request, owner_id: OwnerId, week: WeekName, payload: NoFields | None = None):
    return sheet_json(await timesheets.asubmit(actor=request.auth, owner_id=owner_id, week=week))


@router.post(
    "/timesheets/{id:owner_id}/{week}/withdraw",
    response={200: WeekOut, **TRANSITION_ERRORS},
    summary="Withdraw your submitted week, open again",
    description=(
        "Only its owner withdraws a week (403 `forbidden`), and only while it is submitted, not yet decided"
        " (409 `wrong_state`)."
    ),
)
async def withdraw_week(request, owner_id: OwnerId, week: WeekName, payload: NoFields | None = None):
    return sheet_json(await timesheets.awithdraw(actor=request.auth, owner_id=owner_id, week=week))


@router.post(
    "/timesheets/{id:owner_id}/{week}/approve",
    response={200: WeekOut, **TRANSITION_ERRORS},
    summary="Approve a submitted week: its time is locked",
    description=(
        "For the leads of the owner's teams and approvers; one's own week only with the permission to"
        " (403 `forbidden`). A week of someone whose weeks you may not see does not exist (404 `not_found`); one"
        " not submitted is refused (409 `wrong_state`). Once approved, a change to its time is refused"
        " (409 `locked`) but by those who may override locks. The owner is notified."
    ),
)
async def approve_week(request, owner_id: OwnerId, week: WeekName, payload: DecideIn | None = None):
    submission = payload.submission if payload else None
    sheet = await timesheets.aapprove(actor=request.auth, owner_id=owner_id, week=week, submission=submission)
    return sheet_json(sheet)


@router.post(
    "/timesheets/{id:owner_id}/{week}/reject",
    response={200: WeekOut, **TRANSITION_ERRORS},
    summary="Reject a submitted week with a reason: it is open again for its owner",
    description=(
        "As approving (403 `forbidden`, 404 `not_found`, 409 `wrong_state`); the reason is required, not blank"
        " (400 `invalid`). The owner is notified with the reason, mends the week and submits it again."
    ),
)
async def reject_week(request, owner_id: OwnerId, week: WeekName, payload: RejectIn):
    return sheet_json(
        await timesheets.areject(
            actor=request.auth, owner_id=owner_id, week=week, reason=payload.reason, submission=payload.submission
        )
    )
