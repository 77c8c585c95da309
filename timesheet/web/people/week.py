"""
The week's entries: add one on any day (a start and an end time, or a
duration), change one's start, end, project or label, split one in two,
delete one. Thin async views: each reads its form in the person's zone,
calls one service of ``timesheet.domain.entries``, and answers as every
action of the page does (htmx: the page's regions; a plain form: a redirect
to the week with a message).
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.translation import gettext as _

from timesheet.domain import days, entries
from timesheet.domain.errors import Code, Refused
from timesheet.web.people.common import (
    HtmxHttpRequest,
    form_day,
    form_id,
    form_instant,
    form_time,
    parse_duration,
    post_only,
    signed_in,
)
from timesheet.web.people.page import answer


def _at(day: date, moment: time, zone: ZoneInfo) -> datetime:
    return timezone.make_aware(datetime.combine(day, moment), zone)


def _new_entry(request: HtmxHttpRequest, user: Any) -> dict[str, Any]:
    """
    The add form's fields as ``add_entry`` takes them: a project, a label,
    and a start and an end time on the day (an end before the start is on
    the next day), or a start or an end time and a duration, or a duration
    alone (placed after the day's last entry).
    """
    zone = days.owner_zone(user.pk)
    fields: dict[str, Any] = {
        "projet_id": form_id(request, "projet", _("Choose a project.")),
        "libelle": request.POST.get("libelle", ""),
    }
    day = form_day(request, "day") or days.today(zone)
    start, end = form_time(request, "start"), form_time(request, "end")
    duration = parse_duration(request.POST.get("duration", ""))
    if start is not None and end is not None:
        begins = _at(day, start, zone)
        ends = _at(day if end >= start else day + timedelta(days=1), end, zone)
        return {**fields, "start": begins, "end": ends}
    if duration is None:
        raise Refused(_("Give a start and an end time, or a duration."), code=Code.INVALID)
    # A duration is of real time: counted in UTC, so that it holds across a DST change.
    try:
        if start is not None:
            begins = _at(day, start, zone).astimezone(UTC)
            return {**fields, "start": begins, "end": begins + duration}
        if end is not None:
            ends = _at(day, end, zone).astimezone(UTC)
            return {**fields, "start": ends - duration, "end": ends}
    except OverflowError:  # before the year 1 or after 9999
        raise Refused(_("Dates lie between the years 2 and 9998."), code=Code.INVALID) from None
    return {**fields, "day": day, "duration": duration}


def _monday_of(moment: datetime, user: Any) -> date:
    return days.week_of(moment.astimezone(days.owner_zone(user.pk)).date())[0]


@signed_in
@post_only
async def add_entry(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """A finished entry on any day; the page then shows that day's week."""
    try:
        fields = await sync_to_async(_new_entry)(request, user)
        entry = await entries.aadd_entry(actor=user, **fields)
    except Refused as refused:
        return await answer(request, user, refused=refused)
    week = await sync_to_async(_monday_of)(entry.start, user)
    return await answer(request, user, success=_("Entry added."), week=week)


def _typed(request: HtmxHttpRequest, name: str, zone: ZoneInfo) -> datetime | None:
    """
    The instant typed in ``name``, or None when it reads as it was drawn
    (``<name>_was``): the field holds whole seconds, the ledger milliseconds,
    and an untouched field must not move the entry.
    """
    if request.POST.get(name, "").strip() == request.POST.get(f"{name}_was", "").strip():
        return None
    typed = form_instant(request, name, zone)
    if typed is None:
        raise Refused(_("“%(value)s” is not a date and time.") % {"value": ""}, code=Code.INVALID)
    return typed


def _changes(request: HtmxHttpRequest, user: Any) -> dict[str, Any]:
    zone = days.owner_zone(user.pk)
    changes: dict[str, Any] = {"start": _typed(request, "start", zone), "end": _typed(request, "end", zone)}
    if "projet" in request.POST and request.POST["projet"] != request.POST.get("projet_was"):
        changes["projet_id"] = form_id(request, "projet", _("Choose a project."))
    if "libelle" in request.POST and request.POST["libelle"] != request.POST.get("libelle_was"):
        changes["libelle"] = request.POST["libelle"]
    return changes


@signed_in
@post_only
async def change_entry(request: HtmxHttpRequest, user: Any, entry_id: int) -> HttpResponseBase:
    """An entry's start, end, project or label changed (what was left as drawn stays as it is)."""
    try:
        changes = await sync_to_async(_changes)(request, user)
        await entries.achange_entry(entry_id=entry_id, actor=user, **changes)
    except Refused as refused:
        return await answer(request, user, refused=refused)
    return await answer(request, user, success=_("Entry saved."))


def _split_instant(request: HtmxHttpRequest, user: Any) -> datetime:
    at = form_instant(request, "at", days.owner_zone(user.pk))
    if at is None:
        raise Refused(_("“%(value)s” is not a date and time.") % {"value": ""}, code=Code.INVALID)
    return at


@signed_in
@post_only
async def split_entry(request: HtmxHttpRequest, user: Any, entry_id: int) -> HttpResponseBase:
    """An entry split in two at a time inside it."""
    try:
        at = await sync_to_async(_split_instant)(request, user)
        await entries.asplit_entry(entry_id=entry_id, actor=user, at=at)
    except Refused as refused:
        return await answer(request, user, refused=refused)
    return await answer(request, user, success=_("Entry split in two."))


@signed_in
@post_only
async def delete_entry(request: HtmxHttpRequest, user: Any, entry_id: int) -> HttpResponseBase:
    """An entry and its time deleted (a running one: its fiche paused, the running time discarded)."""
    try:
        await entries.adelete_entry(entry_id=entry_id, actor=user)
    except Refused as refused:
        return await answer(request, user, refused=refused)
    return await answer(request, user, success=_("Entry deleted."))
