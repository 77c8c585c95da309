"""
The timer and the fiches: start, pause (now or at an earlier time), finish,
switch, a new fiche (started at once, if asked) and continuing a fiche as a
new one. Thin async views: each parses its form, calls one service, and answers.
"""

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http.response import HttpResponseBase
from django.utils.translation import gettext as _

from timesheet.domain import days, entries, fiches
from timesheet.domain.errors import Code, Refused
from timesheet.web.people.common import HtmxHttpRequest, form_id, local_instant, post_only, signed_in
from timesheet.web.people.page import answer


def _stop_instant(request: HtmxHttpRequest, user: Any) -> Any:
    """The ``at`` field (a local date and time in the user's zone), or None when empty."""
    raw = request.POST.get("at", "")
    return local_instant(raw, days.owner_zone(user.pk)) if raw.strip() else None


@signed_in
@post_only
async def transition(request: HtmxHttpRequest, user: Any, fiche_id: int, action: str) -> HttpResponseBase:
    """Start, pause (now or at an earlier time), finish or switch to a fiche of the user's."""
    try:
        if action == "start":
            await fiches.astart_fiche(fiche_id=fiche_id, actor=user)
            return await answer(request, user, success=_("Started."))
        if action == "switch":
            await fiches.aswitch_fiche(from_id=form_id(request, "from"), to_id=fiche_id, actor=user)
            return await answer(request, user, success=_("Switched."))
        at = await sync_to_async(_stop_instant)(request, user)
        service = fiches.apause_fiche if action == "pause" else fiches.afinish_fiche
        await service(fiche_id=fiche_id, actor=user, at=at)
        return await answer(request, user, success=_("Paused.") if action == "pause" else _("Finished."))
    except Refused as refused:
        return await answer(request, user, refused=refused)


@signed_in
@post_only
async def continue_fiche(request: HtmxHttpRequest, user: Any, fiche_id: int) -> HttpResponseBase:
    """A new running fiche on the same project with the same label (the running one paused if need be)."""
    try:
        await entries.acontinue_fiche(fiche_id=fiche_id, actor=user)
    except Refused as refused:
        return await answer(request, user, refused=refused)
    return await answer(request, user, success=_("Started."))


@signed_in
@post_only
async def create(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """A new fiche on an active project (the timer's "What are you working on?"), started at once if asked."""
    try:
        projet_id = form_id(request, "projet", _("Choose a project."))
        fields = {"projet_id": projet_id, "actor": user, "libelle": request.POST.get("libelle", "").strip()}
        await fiches.acreate_fiche(**fields, start=request.POST.get("start") == "on")
    except Refused as refused:
        if refused.code != Code.LIMIT_REACHED:
            return await answer(request, user, refused=refused)
        # Another fiche runs: keep what was typed as a paused fiche, one click from a switch.
        await fiches.acreate_fiche(**fields)
        messages.warning(request, _("Fiche created but not started: another one is running. Switch to it below."))
        return await answer(request, user)
    started = request.POST.get("start") == "on"
    return await answer(request, user, success=_("Started.") if started else _("Fiche created."))
