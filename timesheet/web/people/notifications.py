"""
The bell's notifications on the people's pages: their list
(``/notifications/``; for htmx, the bell alone, drawn again when the stream
says one came), marking one or all read, and stopping a forgotten timer at
the instant one really stopped (the time after it removed exactly). Thin
async views: each calls the services of ``timesheet.domain.notifications``
(and ``fiches.pause_fiche``) and answers as every action of the page does:
JSON for its script, the page's regions for htmx, else a redirect back to
the page the form was on, with a message.
"""

from datetime import date, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from timesheet.core import limits
from timesheet.core.dbtime import db_now
from timesheet.domain import days, fiches, ledger, notifications
from timesheet.domain.errors import Code, Refused
from timesheet.models import Notification
from timesheet.web.people.common import HtmxHttpRequest, asked_week, home_url, local_instant, post_only, signed_in
from timesheet.web.people.page import STOPPABLE, answer, bell_context, notices, still_running

PAGE_SIZE = 50


def _back_to(request: HtmxHttpRequest) -> str:
    """Where a plain form goes back to: the page it was on (its ``next``, if it is one of ours), else the home page."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse("home")


async def _answer(
    request: HtmxHttpRequest, user: Any, *, refused: Refused | None = None, success: str = "", week: date | None = None
) -> HttpResponseBase:
    """
    As ``page.answer``; a plain form goes back to the page it was sent from
    (the bell is on every page), or to ``week`` on the home page.
    """
    if request.headers.get("X-Requested-With") == "fetch" or request.htmx:
        return await answer(request, user, refused=refused, success=success, week=week)
    if refused:
        messages.error(request, refused.message)
    elif success:
        messages.success(request, success)
    return redirect(home_url(week) if week and not refused else _back_to(request))


def _list_page(request: HtmxHttpRequest, user: Any) -> TemplateResponse:
    """The notifications' page: the newest (or those before ``?before=``), and the bell."""
    zone = days.owner_zone(user.pk)
    if request.htmx and not request.htmx.history_restore_request:
        # The stream said one came: the bell alone, swapped out of band.
        template, context = "timesheet/people/_bell.html", {"bell": bell_context(user), "zone": zone, "oob": True}
    else:
        before = limits.parse_id(request.GET.get("before", ""))
        found = notifications.page(user=user, limit=PAGE_SIZE, before_id=before)
        context = {
            "zone": zone,
            "bell": bell_context(user),
            "items": notices(found, db_now()),
            "older": found[-1].pk if len(found) == PAGE_SIZE else None,
            "paged": before is not None,
        }
        template = "timesheet/people/notifications.html"
    response = TemplateResponse(request, template, context)
    with timezone.override(zone):
        response.render()
    patch_vary_headers(response, ["HX-Request"])
    return response


@signed_in
async def notification_list(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """The person's notifications, newest first (for htmx: the bell, drawn again)."""
    return await sync_to_async(_list_page)(request, user)


@signed_in
@post_only
async def read_notification(request: HtmxHttpRequest, user: Any, notification_id: int) -> HttpResponseBase:
    """
    Mark one of the person's notifications read ("Keep it running"); with
    ``go_week`` (days without time), the page then shows that week.
    """
    week = asked_week(request.POST.get("go_week"))
    try:
        await notifications.amark_read(notification_id=notification_id, actor=user)
    except Refused as refused:
        return await _answer(request, user, refused=refused)
    return await _answer(request, user, success="" if week else _("Marked as read."), week=week)


@signed_in
@post_only
async def read_all_notifications(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """Mark every unread notification of the person read."""
    count = await notifications.amark_all_read(actor=user)
    success = (
        ngettext("%(count)s notification marked as read.", "%(count)s notifications marked as read.", count)
        % {"count": count}
        if count
        else _("No unread notifications.")
    )
    return await _answer(request, user, success=success)


def _stop_of(request: HtmxHttpRequest, user: Any, notification_id: int) -> tuple[int, datetime]:
    """
    The fiche a reminder of the person's is about, if it still runs the
    stretch it was about, and the instant typed in ``at`` (their local time).
    """
    notification = Notification.objects.visible_to(user).select_related("fiche").filter(pk=notification_id).first()
    if notification is None:
        raise Refused(_("Notification %(id)s does not exist.") % {"id": notification_id}, code=Code.NOT_FOUND)
    if notification.kind not in STOPPABLE or notification.fiche_id is None:
        raise Refused(_("This notification is not about a running fiche."), code=Code.INVALID)
    if not still_running(notification):
        raise Refused(
            _("Fiche %(id)s no longer runs the stretch this reminder is about: there is nothing to stop.")
            % {"id": notification.fiche_id},
            code=Code.WRONG_STATE,
        )
    at = local_instant(request.POST.get("at", ""), days.owner_zone(user.pk))
    if at is None:
        raise Refused(_("Give the time you stopped at."), code=Code.INVALID)
    return notification.fiche_id, at


@signed_in
@post_only
async def stop_at_notification(request: HtmxHttpRequest, user: Any, notification_id: int) -> HttpResponseBase:
    """
    "Stop it at the time I really stopped": pause the fiche a reminder is
    about at the instant typed (the time after it is not counted), and mark
    the reminder read.
    """
    try:
        fiche_id, at = await sync_to_async(_stop_of)(request, user, notification_id)
        await fiches.apause_fiche(fiche_id=fiche_id, actor=user, at=at)
    except Refused as refused:
        return await _answer(request, user, refused=refused)
    await notifications.amark_read(notification_id=notification_id, actor=user)
    zone = await sync_to_async(days.owner_zone)(user.pk)
    success = _("Stopped at %(at)s: the time after it is not counted.") % {"at": ledger.local_text(at, zone)}
    return await _answer(request, user, success=success)
