"""
The people's page at ``/``: the timer bar, the week's entries, the weekly
time sheets (``timesheets``), the other open fiches and the recently
finished ones. Drawn whole, or, for htmx, as
its regions swapped out of band; every time on it in the person's zone,
named with it.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http import JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django_htmx.http import push_url

from timesheet.core import conf, limits
from timesheet.core.dbtime import db_now
from timesheet.domain import days, entries, locks, notifications
from timesheet.domain.errors import Refused
from timesheet.models import Etat, FicheTemps, Notification, NotificationKind, Projet, TeamMembership
from timesheet.web.http import refusal
from timesheet.web.people.budgets import budgets_context
from timesheet.web.people.common import HtmxHttpRequest, asked_day, asked_week, home_url, signed_in, week_of_request
from timesheet.web.people.timesheets import shown_sheet, weeks_context

RECENT_FINISHED = 10
SECOND = timedelta(seconds=1)


def floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def ceil_second(moment: datetime) -> datetime:
    return moment if moment.microsecond == 0 else floor_second(moment) + SECOND


@dataclass(frozen=True)
class Running:
    """A running fiche in the timer bar, with the bounds of its "I stopped earlier…" field."""

    fiche: FicheTemps
    # The field holds whole seconds: from the first one inside the running
    # stretch to the database's now when drawn (never before that first one).
    stop_min: datetime
    stop_max: datetime


@dataclass(frozen=True)
class Piece:
    """An entry's part of one day, as the week shows it."""

    entry: entries.Entry
    seconds: float
    rate: int  # 1 while it runs and the day is today: it grows one second a second
    from_earlier_day: bool
    to_later_day: bool
    split_at: datetime | None  # the default of its split field; None when it is too short to split
    split_min: datetime | None
    split_max: datetime | None


@dataclass(frozen=True)
class Day:
    day: date
    is_today: bool
    seconds: float
    rate: int
    pieces: list[Piece]


def _piece(entry: entries.Entry, seconds: float, day: date, today: date, zone: ZoneInfo, now: datetime) -> Piece:
    end = entry.end or now
    split_min, split_max = floor_second(entry.start) + SECOND, ceil_second(end) - SECOND
    splittable = split_min <= split_max and split_min < end
    middle = floor_second(entry.start + (end - entry.start) / 2)
    return Piece(
        entry=entry,
        seconds=seconds,
        rate=1 if entry.end is None and day == today else 0,
        from_earlier_day=entry.start.astimezone(zone).date() < day,
        to_later_day=entry.end is not None and (entry.end - SECOND / 1000).astimezone(zone).date() > day,
        split_at=min(max(middle, split_min), split_max) if splittable else None,
        split_min=split_min if splittable else None,
        split_max=split_max if splittable else None,
    )


# The bell ------------------------------------------------------------------------

BELL_SIZE = 8  # the newest notifications its panel lists
STOPPABLE = {NotificationKind.FORGOTTEN_TIMER, NotificationKind.END_OF_DAY}


@dataclass(frozen=True)
class Notice:
    """A notification as the bell and the notifications' page show it, with what may be done about it."""

    notification: Notification
    title: str
    # A fiche still running the stretch it is about: the bounds of its "I stopped at" field (whole seconds).
    stop_min: datetime | None = None
    stop_max: datetime | None = None
    week: date | None = None  # days without time: the Monday of their week


def still_running(notification: Notification) -> bool:
    """Whether the fiche a reminder is about still runs the stretch it was about."""
    fiche = notification.fiche
    if notification.kind not in STOPPABLE or fiche is None or not fiche.is_running:
        return False
    since = (notification.payload or {}).get("running_since")
    try:
        told = datetime.fromisoformat(since) if isinstance(since, str) else None
    except ValueError:
        told = None
    return told is None or told == fiche.en_calcul_depuis


def missing_week(notification: Notification) -> date | None:
    """The Monday of the week a days-without-time notification is about."""
    payload = notification.payload or {}
    if notification.kind != NotificationKind.MISSING_TIME:
        return None
    day = asked_day(payload.get("first") or next(iter(payload.get("days") or []), None))
    return days.week_of(day)[0] if day else None


def notices(found: list[Notification], now: datetime) -> list[Notice]:
    """``found`` as the page shows them, in the active language, read at ``now`` (the database's)."""
    shown = []
    for notification in found:
        stop_min = stop_max = None
        if notification.read_at is None and still_running(notification):
            assert notification.fiche is not None and notification.fiche.en_calcul_depuis is not None
            stop_min = ceil_second(notification.fiche.en_calcul_depuis)
            stop_max = max(floor_second(now), stop_min)
        shown.append(
            Notice(
                notification=notification,
                title=notifications.title(notification),
                stop_min=stop_min,
                stop_max=stop_max,
                week=missing_week(notification),
            )
        )
    return shown


def bell_context(user: Any) -> dict[str, Any]:
    """The bell in the header: how many are unread, and the newest few."""
    return {
        "unread": notifications.unread_count(user=user),
        "items": notices(notifications.page(user=user, limit=BELL_SIZE), db_now()),
    }


def week_context(user: Any, monday: date | None, now: datetime, add_day: date | None = None) -> dict[str, Any]:
    """
    The week holding ``monday`` (None: the current one) as the page shows
    it, its live figures with their rates; the add form on ``add_day`` if it
    is in the week, else today (in this week) or its Monday.
    """
    week = entries.week(user=user, day=monday)
    current = week.first <= week.today <= week.last
    running_projets: dict[str, int] = {}
    week_days = []
    for day in week.days:
        pieces = [_piece(entry, seconds, day.day, week.today, week.zone, now) for entry, seconds in day.entries]
        for piece in pieces:
            if piece.rate:
                running_projets[piece.entry.projet_name] = running_projets.get(piece.entry.projet_name, 0) + 1
        is_today = day.day == week.today
        rate = week.running if is_today else 0
        week_days.append(Day(day=day.day, is_today=is_today, seconds=day.seconds, rate=rate, pieces=pieces))
    projets = dict(week.projets)
    for name in running_projets:
        projets.setdefault(name, 0.0)
    today_seconds = next((day.seconds for day in week_days if day.is_today), 0.0)
    return {
        "week": week,
        "current": current,
        # The person's weeks sharing days with it that hold their time: said above it, since its edits are refused.
        "held_weeks": list(
            locks.held_weeks(user.pk)
            .filter(first_day__lte=week.last, first_day__gt=week.first - timedelta(days=7))
            .order_by("first_day")
            .values("week", "state")
        ),
        "days": week_days,
        "projets_week": [(name, seconds, running_projets.get(name, 0)) for name, seconds in sorted(projets.items())],
        "rate": week.running if current else 0,
        "today_seconds": today_seconds,
        "add_day": add_day if add_day and week.first <= add_day <= week.last else week.today if current else week.first,
        # Forms send it back, so that a plain POST comes back to this week.
        "week_param": "" if current else week.first.isoformat(),
        "url": home_url(None if current else week.first),
    }


def teams_of(user: Any) -> list[TeamMembership]:
    """The person's teams, by name, each with whether they lead it."""
    return list(TeamMembership.objects.filter(user_id=user.pk).select_related("team").order_by("team__name"))


def page_context(
    user: Any, monday: date | None, add_day: date | None = None, sheet: str | None = None
) -> dict[str, Any]:
    """Everything the page shows, read on the database's clock (``sheet``: the week the weeks' card shows)."""
    zone = days.owner_zone(user.pk)
    open_fiches = list(
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
    running = [fiche for fiche in open_fiches if fiche.is_running]
    now: datetime = running[0].db_now if running else timezone.now()  # type: ignore[attr-defined]
    cards = []
    for fiche in running:
        assert fiche.en_calcul_depuis is not None
        stop_min = ceil_second(fiche.en_calcul_depuis)
        drawn_at: datetime = fiche.db_now  # type: ignore[attr-defined]  # with_live_time()'s
        cards.append(Running(fiche=fiche, stop_min=stop_min, stop_max=max(floor_second(drawn_at), stop_min)))
    limit = conf.max_running_per_owner()
    # The pickers offer what the person may charge time to: active, and open to them (their teams').
    projets = list(Projet.objects.usable_by(user).order_by("designation"))
    active = {projet.pk for projet in projets}
    # The timer and the add form offer the project last worked on.
    recent = sorted((f for f in [*open_fiches, *finished] if f.projet_id in active), key=lambda f: f.updated_at)
    latest = recent[-1].projet_id if recent else None
    return {
        "zone": zone,
        "running": cards,
        "paused": [fiche for fiche in open_fiches if not fiche.is_running],
        "switch_from": running[0] if running else None,
        "can_start_more": not limit or len(running) < limit,
        "finished": finished,
        "projets": projets,
        "active_projets": active,
        "default_projet": latest,
        "limits": {"label": limits.LABEL_MAX_LENGTH},
        "bell": bell_context(user),
        "teams": teams_of(user),
        **budgets_context(user),
        **weeks_context(user, sheet),
        **week_context(user, monday, now, add_day),
    }


def _render(request: HtmxHttpRequest, template: str, context: dict[str, Any], status: int = 200) -> TemplateResponse:
    """The template rendered now, with every date and time in the person's zone."""
    response = TemplateResponse(request, template, context, status=status)
    with timezone.override(context["zone"]):
        response.render()
    patch_vary_headers(response, ["HX-Request"])
    return response


def _draw(
    request: HtmxHttpRequest, user: Any, monday: date | None, *, status: int, only_messages: bool
) -> HttpResponseBase:
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    if partial and only_messages:
        return _render(request, "timesheet/people/_messages.html", {"oob": True, "zone": None}, status=status)
    add_day = asked_day(request.GET.get("day")) if request.method == "GET" else None
    try:
        context = page_context(user, monday, add_day, shown_sheet(request))
    except Refused as refused:  # a week out of range: this week instead
        messages.error(request, refused.message)
        context = page_context(user, None, sheet=shown_sheet(request))
    if partial:
        return _render(request, "timesheet/people/_regions.html", {**context, "oob": True}, status=status)
    return _render(request, "timesheet/people/home.html", context, status=status)


@signed_in
async def home(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """The page: the timer, the week asked (``?week=`` any day of it; this week by default), the open fiches."""
    asked = request.GET.get("week", "")
    monday = asked_week(asked)
    if asked and monday is None:
        messages.error(request, _("'%(name)s' must be a date (YYYY-MM-DD).") % {"name": "week"})
    return await sync_to_async(_draw)(request, user, monday, status=200, only_messages=False)


async def answer(
    request: HtmxHttpRequest, user: Any, *, refused: Refused | None = None, success: str = "", week: date | None = None
) -> HttpResponseBase:
    """
    How every action answers. The page's fetch script (``X-Requested-With:
    fetch``): the message as JSON, or the refusal as its JSON error with its
    code's status. htmx: the page's regions drawn again, with the message
    (a refusal: the message alone, with its code's status, so that nothing
    typed is lost). A plain form: a message, and a redirect to the page on
    the week it came from (or ``week``).
    """
    if request.headers.get("X-Requested-With") == "fetch":
        return refusal(refused) if refused else JsonResponse({"message": success})
    if refused:
        messages.error(request, refused.message)
    elif success:
        messages.success(request, success)
    came_from = week_of_request(request)
    if request.htmx:
        status = refused.status if refused else 200
        response = await sync_to_async(_draw)(
            request, user, week or came_from, status=status, only_messages=refused is not None
        )
        if week is not None and week != came_from and not refused:
            push_url(response, home_url(week))  # the page moved to another week: so does the address
        return response
    return redirect(home_url(week or came_from))
