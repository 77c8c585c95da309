"""
The people's page at ``/``: everyone who tracks time sees their fiches with
live time, starts, pauses, finishes, switches and stops at an earlier
instant, makes API tokens, and sees their day and week. Thin async views:
each parses a form, calls one service, and redirects back (or, for the
page's script, answers a JSON message or error); the page re-renders its list
when the stream says something changed.
"""

from datetime import timedelta

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http import HttpResponseNotAllowed, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from timesheet.core import conf, limits
from timesheet.domain import days, exports, fiches, profiles, reports, tokens
from timesheet.domain.errors import Code, Refused
from timesheet.models import ApiToken, Etat, FicheTemps, Projet
from timesheet.web.http import error, refusal, session_user

RECENT_FINISHED = 10


def signed_in(view):
    """An async view for signed-in users; anyone else goes to the sign-in page."""

    async def wrapper(request, *args, **kwargs):
        user = await session_user(request)
        if not user.is_authenticated:
            return redirect(f"{reverse('login')}?next={request.path}")
        return await view(request, user, *args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return never_cache(wrapper)


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
    zone = days.owner_zone(user.pk)
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
        "zones": days.all_time_zones(),
        "tokens": list(ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")),
        "zone": zone,
        "now_local": days.local_now(zone).replace(microsecond=0, tzinfo=None),
        "limits": {
            "label": limits.LABEL_MAX_LENGTH,
            "token_name": limits.TOKEN_NAME_MAX_LENGTH,
            "token_days": limits.TOKEN_MAX_LIFETIME.days,
            "token_default_days": limits.TOKEN_DEFAULT_LIFETIME.days,
        },
    }


@signed_in
async def home(request, user):
    """The user's fiches, running first, with the forms that act on them."""
    context = await sync_to_async(_page_data)(user)
    return TemplateResponse(request, "timesheet/people/home.html", context)


def _answer(request, *, refused: Refused | None = None, success: str = ""):
    """
    For the page's script: the message as JSON, or the refusal as its JSON
    error with its code's status; for a plain form: a message and a redirect home.
    """
    if request.headers.get("X-Requested-With") == "fetch":
        return refusal(refused) if refused else JsonResponse({"message": success})
    if refused:
        messages.error(request, refused.message)
    elif success:
        messages.success(request, success)
    return redirect("home")


def _form_id(request, name: str, message: str = "") -> int:
    """The form's field ``name`` as an id; refused as invalid when it is not one."""
    raw = request.POST.get(name, "")
    parsed = limits.parse_id(raw)
    if parsed is None:
        raise Refused(message or _("“%(value)s” is not an id.") % {"value": raw.strip()}, code=Code.INVALID)
    return parsed


def _stop_instant(request, user):
    """The ``at`` field (a local date and time in the user's zone), or None when empty."""
    raw = request.POST.get("at", "").strip()
    if not raw:
        return None
    try:
        parsed = parse_datetime(raw)
    except ValueError:  # well formed, but no such date (2026-02-30)
        parsed = None
    if parsed is None:
        raise Refused(_("“%(value)s” is not a date and time.") % {"value": raw}, code=Code.INVALID)
    return parsed if parsed.tzinfo else timezone.make_aware(parsed, days.owner_zone(user.pk))


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
            await fiches.aswitch_fiche(from_id=_form_id(request, "from"), to_id=fiche_id, actor=user)
            return _answer(request, success=_("Switched."))
        at = await sync_to_async(_stop_instant)(request, user)
        service = fiches.apause_fiche if action == "pause" else fiches.afinish_fiche
        await service(fiche_id=fiche_id, actor=user, at=at)
        return _answer(request, success=_("Paused.") if action == "pause" else _("Finished."))
    except Refused as refused:
        return _answer(request, refused=refused)


@signed_in
async def create(request, user):
    """A new fiche on an active project, started at once if asked."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        projet_id = _form_id(request, "projet", _("Choose a project."))
        fields = {"projet_id": projet_id, "actor": user, "libelle": request.POST.get("libelle", "").strip()}
        await fiches.acreate_fiche(**fields, start=request.POST.get("start") == "on")
    except Refused as refused:
        if refused.code != Code.LIMIT_REACHED:
            return _answer(request, refused=refused)
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
        lifetime_days = int(request.POST.get("days", limits.TOKEN_DEFAULT_LIFETIME.days))
        _token, raw = await tokens.acreate_token(
            user=user,
            name=request.POST.get("name", ""),
            scope=request.POST.get("scope", "read"),
            lifetime=timedelta(days=lifetime_days),
        )
    except (ValueError, OverflowError):
        messages.error(request, _("The validity is a number of days."))
    except Refused as refused:
        messages.error(request, refused.message)
    else:
        messages.warning(request, _("Your new token, shown this once (copy it now): %(token)s") % {"token": raw})
    return redirect("home")  # the top of the page, where the message is


@signed_in
async def revoke_token(request, user, token_id):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        await tokens.arevoke_token(token_id=token_id, actor=user)
    except Refused as refused:
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
        await profiles.aset_time_zone(user=user, name=request.POST.get("time_zone", "").strip())
    except Refused as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, _("Time zone saved."))
    return redirect("home")


def _report_request(request, user) -> reports.ReportRequest:
    """The export's range and grouping from the query (this week by default), for the user's own time."""
    monday, sunday = days.week_of(days.today_for(user.pk))
    return reports.request_from_query(user=user, query=request.GET, first=monday, last=sunday)


def _export_body(asked: reports.ReportRequest, kind: str, give_back) -> exports.Streamed:
    """
    The export's chunks, made on the request's thread as the response is
    sent: the report's rows streamed from its query, as CSV chunks or an XLSX
    written to a temporary file; the slot given back when it ends.
    """
    max_rows = int(conf.get("EXPORT_MAX_ROWS"))
    rows = reports.report_rows(asked)
    if kind == "csv":
        return exports.Streamed(exports.csv_chunks(rows, max_rows=max_rows), give_back)
    return exports.Streamed(exports.xlsx_chunks(rows, reports.rounding_of, max_rows=max_rows), give_back)


@signed_in
async def export(request, user, kind):
    """
    The report as CSV or XLSX: the user's own rows (staff: anyone's, with
    ?owner=), streamed. Past EXPORT_MAX_ROWS rows it ends with a marked
    ``truncated`` row; past EXPORT_MAX_CONCURRENT exports at once, a 429.
    """
    try:
        asked = await sync_to_async(_report_request)(request, user)
    except Refused as refused:
        return refusal(refused)
    give_back = exports.slots.take()
    if give_back is None:
        return error(429, exports.slots.refusal_message(), Retry_After=str(exports.RETRY_AFTER_SECONDS))
    content_type = exports.CSV_CONTENT_TYPE if kind == "csv" else exports.XLSX_CONTENT_TYPE
    response = StreamingHttpResponse(_export_body(asked, kind, give_back), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="time-{asked.first}_{asked.last}.{kind}"'
    return response
