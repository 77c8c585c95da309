"""
The people's page at ``/``: everyone who tracks time sees their fiches with
live time, starts, pauses, finishes, switches and stops at an earlier
instant, makes API tokens, and sees their day and week. Thin async views:
each parses a form, calls one service, and redirects back (or, for the
page's script, answers a JSON message or error); the page re-renders its list
when the stream says something changed.
"""

import zoneinfo
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from timesheet.core import conf
from timesheet.domain import fiches, reports, tokens
from timesheet.models import ApiToken, Etat, FicheTemps, Projet
from timesheet.web import views

RECENT_FINISHED = 10


def signed_in(view):
    """An async view for signed-in users; anyone else goes to the sign-in page."""

    async def wrapper(request, *args, **kwargs):
        user = await views.session_user(request)
        if not user.is_authenticated:
            return redirect(f"{reverse('login')}?next={request.path}")
        return await view(request, user, *args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return never_cache(wrapper)


def user_zone(user):
    """The time zone the user's days are counted in."""
    return reports.owner_zone(user.pk)


def _page_data(user):
    fiches = list(
        FicheTemps.objects.filter(owner=user)
        .exclude(etat=Etat.TERMINEE)
        .with_live_time()
        .select_related("projet")
        .order_by("etat", "-updated_at", "-id")
    )
    finished = list(
        FicheTemps.objects.filter(owner=user, etat=Etat.TERMINEE)
        .with_live_time()
        .select_related("projet")
        .order_by("-updated_at", "-id")[:RECENT_FINISHED]
    )
    zone = user_zone(user)
    week = reports.own_week(user=user, zone=zone)
    running = [fiche for fiche in fiches if fiche.is_running]
    limit = conf.max_running_per_owner()
    return {
        "fiches": fiches,
        "switch_from": running[0] if running else None,
        "can_start_more": not limit or len(running) < limit,
        "finished": finished,
        "projets": list(Projet.objects.filter(actif=True).order_by("designation")),
        # Today and this week grow at one second a second per running fiche.
        "totals": {"day": week["day"], "week": week["week"], "running": len(running)},
        "week": week["report"],
        "zones": sorted(zoneinfo.available_timezones()),
        "tokens": list(ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")),
        "zone": zone,
        "now_local": reports.db_now().astimezone(zone).replace(microsecond=0, tzinfo=None),
    }


@signed_in
async def home(request, user):
    """The user's fiches, running first, with the forms that act on them."""
    context = await sync_to_async(_page_data)(user)
    return TemplateResponse(request, "timesheet/people/home.html", context)


def _answer(request, *, error=None, success=None):
    """For the page's script: 204 or a JSON error; for a plain form: a message and a redirect home."""
    if request.headers.get("X-Requested-With") == "fetch":
        return JsonResponse({"error": error}, status=409) if error else JsonResponse({"message": success or ""})
    if error:
        messages.error(request, error)
    elif success:
        messages.success(request, success)
    return redirect("home")


def _stop_instant(request, user):
    """The ``at`` field (a local date and time in the user's zone), or None when empty."""
    raw = request.POST.get("at", "").strip()
    if not raw:
        return None
    parsed = parse_datetime(raw)
    if parsed is None:
        raise fiches.TransitionRefused(_("“%(value)s” is not a date and time.") % {"value": raw}, code="invalid")
    return parsed if parsed.tzinfo else timezone.make_aware(parsed, user_zone(user))


@signed_in
async def transition(request, user, fiche_id, action):
    """Start, pause (now or at an earlier time), finish or switch to a fiche of the user's."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        if action == "start":
            await fiches.astart_fiche(fiche_id=fiche_id, actor=user)
            return _answer(request, success=_("Started."))
        if action == "switch":
            await fiches.aswitch_fiche(from_id=int(request.POST.get("from", 0) or 0), to_id=fiche_id, actor=user)
            return _answer(request, success=_("Switched."))
        at = await sync_to_async(_stop_instant)(request, user)
        service = fiches.apause_fiche if action == "pause" else fiches.afinish_fiche
        await service(fiche_id=fiche_id, actor=user, at=at)
        return _answer(request, success=_("Paused.") if action == "pause" else _("Finished."))
    except (fiches.TransitionRefused, ValueError) as refused:
        return _answer(request, error=getattr(refused, "message", str(refused)))


@signed_in
async def create(request, user):
    """A new fiche on an active project, started at once if asked."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        projet_id = int(request.POST.get("projet", ""))
    except ValueError:
        return _answer(request, error=_("Choose a project."))
    fields = {"projet_id": projet_id, "actor": user, "libelle": request.POST.get("libelle", "").strip()}
    try:
        await fiches.acreate_fiche(**fields, start=request.POST.get("start") == "on")
    except fiches.TransitionRefused as refused:
        if refused.code != "limit_reached":
            return _answer(request, error=refused.message)
        # Another fiche runs: keep what was typed as a paused fiche, one click from a switch.
        await fiches.acreate_fiche(**fields)
        messages.warning(request, _("Fiche created but not started: another one is running. Switch to it below."))
        return redirect("home")
    return _answer(request, success=_("Fiche created."))


@signed_in
async def create_token(request, user):
    """A personal API token, shown this once."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        days = int(request.POST.get("days", "90"))
        _token, raw = await sync_to_async(tokens.create_token)(
            user=user,
            name=request.POST.get("name", ""),
            scope=request.POST.get("scope", "read"),
            lifetime=timedelta(days=days),
        )
    except (ValueError, OverflowError):
        messages.error(request, _("The validity is a number of days."))
    except fiches.TransitionRefused as refused:
        messages.error(request, refused.message)
    else:
        messages.warning(request, _("Your new token, shown this once (copy it now): %(token)s") % {"token": raw})
    return redirect("home")  # the top of the page, where the message is


@signed_in
async def revoke_token(request, user, token_id):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        await sync_to_async(tokens.revoke_token)(token_id=token_id, actor=user)
    except fiches.TransitionRefused as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, _("Token revoked."))
    return redirect("home")


@signed_in
async def set_time_zone(request, user):
    """The time zone the user's days are counted in."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        await sync_to_async(fiches.set_time_zone)(user=user, name=request.POST.get("time_zone", "").strip())
    except fiches.TransitionRefused as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, _("Time zone saved."))
    return redirect("home")


def _report_arguments(request, user):
    """The export's range and grouping from the query (this ISO week by default), for the user's own time."""
    from timesheet.web.api import ReportFilters, report_arguments

    today = reports.db_now().astimezone(user_zone(user)).date()
    monday = today - timedelta(days=today.weekday())
    data = {"from": monday.isoformat(), "to": (monday + timedelta(days=6)).isoformat(), **request.GET.dict()}
    return report_arguments(user, ReportFilters(**data))


@signed_in
async def export(request, user, kind):
    """The report as CSV or XLSX: the user's own rows (staff: anyone's, with ?owner=)."""
    from django.http import HttpResponse
    from pydantic import ValidationError

    from timesheet.domain import exports

    try:
        arguments = await sync_to_async(_report_arguments)(request, user)
    except (ValidationError, ValueError, fiches.TransitionRefused) as exc:
        return JsonResponse({"error": getattr(exc, "message", str(exc))}, status=400)
    # The report and the file are made off the event loop.
    render = exports.as_csv if kind == "csv" else exports.as_xlsx
    content = await sync_to_async(lambda: render(reports.report(**arguments)))()
    stamp = f"{arguments['first']}_{arguments['last']}"
    if kind == "csv":
        response = HttpResponse(content, content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(
            content, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
    response["Content-Disposition"] = f'attachment; filename="time-{stamp}.{kind}"'
    return response
