"""
The weeks on the people's page (``timesheet.domain.timesheets``): *My week*
(the week the card shows, this one by default, ``?sheet=2026-W49`` another:
each day's and each project's total, what still runs in it, Submit or
Withdraw as its state allows, a rejection's reason), the person's last weeks
with their state, each with its own Submit or Withdraw, and, for those who
decide weeks, the queue of weeks waiting for them (Approve, or Reject with a
reason). Drawn with the page's regions, and again every few seconds through
htmx (``/weeks``), so that a decision taken elsewhere shows without a
reload. Thin async views: each calls one service and answers as every action
of the page does (htmx: the regions; a plain form: a redirect back to the
weeks, with a message).
"""

import re
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _

from timesheet.core import limits
from timesheet.core.dbtime import db_now
from timesheet.domain import days, timesheets
from timesheet.domain.errors import Refused
from timesheet.models import WeekSheet
from timesheet.web.people.common import HtmxHttpRequest, post_only, signed_in, week_of_request

TEMPLATE = "timesheet/people/_weeks.html"
SIX_DAYS = timedelta(days=6)  # from a week's first day to its last
FAR_FROM_USUAL = 20  # percent: a week this far from the person's usual one is marked
State = WeekSheet.State
# How a week is named in an address or a form ("2026-W49"); anything else is the current week.
_LABEL = re.compile(r"^\d{4}-W\d{2}$")


# Which week the card shows ---------------------------------------------------------


def _label(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if _LABEL.match(value) else None


def shown_sheet(request: HttpRequest) -> str | None:
    """
    The week *My week* shows ("2026-W49"), None for the current one: a form's
    ``sheet_shown`` (sent back so that its answer shows the same week), else
    else, for htmx, that of the page it came from; for a GET, the address's
    ``sheet``.
    """
    if request.method != "POST":  # a page or the region asked: its address says it all
        return _label(request.GET.get("sheet"))
    if "sheet_shown" in request.POST:
        return _label(request.POST["sheet_shown"])
    current = getattr(getattr(request, "htmx", None), "current_url", None)
    if current:
        return _label(parse_qs(urlsplit(current).query).get("sheet", [""])[0])
    return None


# What the region shows ---------------------------------------------------------------


def _names(user_ids: set[int | None]) -> dict[int, str]:
    """Each user's name as the page shows people: their full name, else their username."""
    found = get_user_model().objects.filter(pk__in={pk for pk in user_ids if pk is not None})
    return {person.pk: person.get_full_name() or person.get_username() for person in found}


def _days(per_day: dict[str, float] | list[tuple[str, float]]) -> list[tuple[date, float]]:
    pairs = per_day.items() if isinstance(per_day, dict) else per_day
    return sorted((date.fromisoformat(day), seconds) for day, seconds in pairs)


def _mine(user: Any, sheet: str | None, now: Any) -> dict[str, Any]:
    """*My week*: the week, its state and totals, what runs in it, what may be done about it."""
    try:
        own = timesheets.own_week(user=user, week=sheet)
    except Refused:  # no such week: this one
        own = timesheets.own_week(user=user)
    week, row = own["week"], own["sheet"]
    begun, over = week.starts_at <= now, week.ends_at <= now
    state = own["state"]
    projets = sorted(own["totals"]["projets"].values(), key=lambda projet: (-projet["seconds"], projet["name"]))
    return {
        "week": week,
        "sheet": row,
        "state": state,
        "state_label": State(state).label,
        "current": begun and not over,
        "begun": begun,
        "over": over,
        "seconds": own["totals"]["seconds"],
        "days": _days(own["totals"]["days"]),
        "projets": projets,
        "running": own["running"],
        "may_submit": begun and state in (State.OPEN, State.REJECTED),
        "may_withdraw": state == State.SUBMITTED,
        "decided_by": row.decided_by_id if row else None,
    }


def _queue(user: Any) -> list[dict[str, Any]]:
    """The weeks waiting for ``user``'s decision, their days and changes with dates."""
    items = []
    for item in timesheets.queue(actor=user):
        usual, difference = item["usual"], item["difference"]
        percent = None if not usual or difference is None else round(100 * difference / usual)
        sheet = item["sheet"]
        changes = [
            {**change, "day": date.fromisoformat(change["day"])} if "day" in change else change
            for change in item["changes"]
        ]
        items.append(
            {
                **item,
                "days": _days(item["days"]),
                "last_day": sheet.first_day + SIX_DAYS,
                "changes": changes,
                # How far from the usual week, in percent of it (None without a usual week); far: by a fifth or more.
                "percent": percent,
                "far": percent is not None and abs(percent) >= FAR_FROM_USUAL,
            }
        )
    return items


def weeks_context(user: Any, sheet: str | None = None) -> dict[str, Any]:
    """
    The region's context, under ``weeks``: *My week* (``sheet``, this one by
    default), the person's last weeks, and the queue of the weeks they may
    decide (shown if they decide anyone's week, or if it holds any).
    """
    now = db_now()
    mine = _mine(user, sheet, now)
    listing = timesheets.weeks_of(actor=user, owner_id=user.pk)
    queue = _queue(user)
    names = _names({mine["decided_by"], *(row["decided_by"] for row in listing)})
    mine["decided_by_name"] = names.get(mine["decided_by"] or 0, "")
    rows = [
        {
            **row,
            "last_day": row["first_day"] + SIX_DAYS,
            "state_label": State(row["state"]).label,
            "decided_by_name": names.get(row["decided_by"] or 0, ""),
            "shown": row["week"] == mine["week"].label,
            "may_submit": row["state"] in (State.OPEN, State.REJECTED),
            "may_withdraw": row["state"] == State.SUBMITTED,
        }
        for row in listing
    ]
    return {
        "weeks": {
            "mine": mine,
            "rows": rows,
            "queue": queue,
            "show_queue": bool(queue) or timesheets.decides_weeks(user),
            "reason_max": timesheets.REASON_MAX_LENGTH,
            # What the region's address and forms carry: "" for the current week.
            "sheet_param": "" if mine["current"] else mine["week"].label,
        }
    }


def _region(request: HtmxHttpRequest, user: Any) -> TemplateResponse:
    zone = days.owner_zone(user.pk)
    monday = week_of_request(request)
    context = {
        **weeks_context(user, shown_sheet(request)),
        "zone": zone,
        # The page's week, sent back by the forms so that a plain POST comes back to it.
        "week_param": monday.isoformat() if monday else "",
    }
    response = TemplateResponse(request, TEMPLATE, context)
    with timezone.override(zone):
        response.render()
    patch_vary_headers(response, ["HX-Request"])
    return response


@signed_in
async def week_list(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """The weeks region of the page, for its periodic refresh (``?sheet=`` the week its card shows)."""
    return await sync_to_async(_region)(request, user)


# Actions -------------------------------------------------------------------------------


def _back_url(request: HtmxHttpRequest) -> str:
    """Where a plain form goes back to: the page on the week it came from, its card on the week it showed."""
    query = {}
    if monday := week_of_request(request):
        query["week"] = monday.isoformat()
    if sheet := shown_sheet(request):
        query["sheet"] = sheet
    return f"{reverse('home')}{'?' + urlencode(query) if query else ''}#weeks"


async def _answer(
    request: HtmxHttpRequest, user: Any, *, refused: Refused | None = None, success: str = ""
) -> HttpResponseBase:
    """As ``page.answer`` (htmx: the page's regions, this one included); a plain form goes back to the weeks."""
    # page.py draws this region with the others: imported when answering, not when loaded.
    from timesheet.web.people.page import answer

    if request.headers.get("X-Requested-With") == "fetch" or request.htmx:
        return await answer(request, user, refused=refused, success=success)
    if refused:
        messages.error(request, refused.message)
    elif success:
        messages.success(request, success)
    return redirect(_back_url(request))


@signed_in
@post_only
async def submit_week(request: HtmxHttpRequest, user: Any, week: str) -> HttpResponseBase:
    """The person's own week ``week`` submitted for approval."""
    try:
        sheet = await timesheets.asubmit(actor=user, owner_id=user.pk, week=week)
    except Refused as refused:
        return await _answer(request, user, refused=refused)
    return await _answer(request, user, success=_("Week %(week)s submitted.") % {"week": sheet.week})


@signed_in
@post_only
async def withdraw_week(request: HtmxHttpRequest, user: Any, week: str) -> HttpResponseBase:
    """The person's own submitted week ``week`` taken back, open again."""
    try:
        sheet = await timesheets.awithdraw(actor=user, owner_id=user.pk, week=week)
    except Refused as refused:
        return await _answer(request, user, refused=refused)
    return await _answer(request, user, success=_("Week %(week)s withdrawn: it is open again.") % {"week": sheet.week})


def _seen(request: HtmxHttpRequest) -> int | None:
    """The submission of the week the page showed (its ``submission`` field), if it says."""
    return limits.parse_id(request.POST.get("submission", ""))


def _owner_name(sheet: WeekSheet) -> str:
    return sheet.owner.get_full_name() or sheet.owner.get_username()


@signed_in
@post_only
async def approve_week(request: HtmxHttpRequest, user: Any, owner_id: int, week: str) -> HttpResponseBase:
    """Someone's submitted week approved by one who may decide it."""
    try:
        sheet = await timesheets.aapprove(actor=user, owner_id=owner_id, week=week, submission=_seen(request))
        name = await sync_to_async(_owner_name)(sheet)
    except Refused as refused:
        return await _answer(request, user, refused=refused)
    return await _answer(request, user, success=_("Week %(week)s of %(name)s approved.") % {"week": week, "name": name})


@signed_in
@post_only
async def reject_week(request: HtmxHttpRequest, user: Any, owner_id: int, week: str) -> HttpResponseBase:
    """Someone's submitted week rejected, with the reason (required), by one who may decide it."""
    try:
        reason = request.POST.get("reason", "")
        sheet = await timesheets.areject(
            actor=user, owner_id=owner_id, week=week, reason=reason, submission=_seen(request)
        )
        name = await sync_to_async(_owner_name)(sheet)
    except Refused as refused:
        return await _answer(request, user, refused=refused)
    return await _answer(request, user, success=_("Week %(week)s of %(name)s rejected.") % {"week": week, "name": name})
