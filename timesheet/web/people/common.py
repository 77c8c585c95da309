"""
What the people's views share: who is signed in, the form's fields read in
the person's words and zone, and the week a page or a form is about.
"""

import re
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from functools import wraps
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponseNotAllowed
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime, parse_time
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django_htmx.middleware import HtmxDetails

from timesheet.core import limits
from timesheet.domain import days
from timesheet.domain.errors import Code, Refused
from timesheet.web.http import session_user

View = Callable[..., Awaitable[HttpResponseBase]]


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's middleware leaves it: ``request.htmx`` says whether htmx sent it, and how."""

    htmx: HtmxDetails


def signed_in(view: View) -> Any:
    """An async view for signed-in users; anyone else goes to the sign-in page."""

    @wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = await session_user(request)
        if not user.is_authenticated:
            return redirect(f"{reverse('login')}?next={request.path}")
        return await view(request, user, *args, **kwargs)

    return never_cache(wrapper)


def post_only(view: View) -> View:
    """An async view that only takes POST (405 otherwise)."""

    @wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return await view(request, *args, **kwargs)

    return wrapper


# Reading a form ------------------------------------------------------------------


def form_id(request: HttpRequest, name: str, message: str = "") -> int:
    """The form's field ``name`` as an id; refused as invalid when it is not one."""
    raw = request.POST.get(name, "")
    parsed = limits.parse_id(raw)
    if parsed is None:
        raise Refused(message or _("“%(value)s” is not an id.") % {"value": raw.strip()}, code=Code.INVALID)
    return parsed


def local_instant(raw: str, zone: ZoneInfo) -> datetime | None:
    """
    A date and time typed in the page (``2026-12-07T09:30``, seconds and
    fractions optional): the person's local time in ``zone``, unless it
    carries its own offset; None when empty; refused when it is no date and time.
    """
    raw = raw.strip()
    if not raw:
        return None
    try:
        parsed = parse_datetime(raw)
    except ValueError:  # well formed, but no such date (2026-02-30)
        parsed = None
    if parsed is None:
        raise Refused(_("“%(value)s” is not a date and time.") % {"value": raw}, code=Code.INVALID)
    return parsed if parsed.tzinfo else timezone.make_aware(parsed, zone)


def form_instant(request: HttpRequest, name: str, zone: ZoneInfo) -> datetime | None:
    """The form's date-and-time field ``name`` as an instant (see ``local_instant``)."""
    return local_instant(request.POST.get(name, ""), zone)


def form_day(request: HttpRequest, name: str) -> date | None:
    """The form's date field ``name`` (YYYY-MM-DD), None when empty; refused when it is no date."""
    raw = request.POST.get(name, "").strip()
    if not raw:
        return None
    return parse_day(raw, name)


def parse_day(raw: str, name: str) -> date:
    try:
        parsed = parse_date(raw)
    except ValueError:
        parsed = None
    if parsed is None or not limits.FIRST_DAY < parsed < limits.LAST_DAY:
        raise Refused(_("'%(name)s' must be a date (YYYY-MM-DD).") % {"name": name}, code=Code.INVALID)
    return parsed


def form_time(request: HttpRequest, name: str) -> time | None:
    """The form's time-of-day field ``name`` (HH:MM, seconds optional), None when empty."""
    raw = request.POST.get(name, "").strip()
    if not raw:
        return None
    try:
        parsed = parse_time(raw)
    except ValueError:
        parsed = None
    if parsed is None:
        raise Refused(_("“%(value)s” is not a time of day (such as 09:30).") % {"value": raw}, code=Code.INVALID)
    return parsed


_CLOCK = re.compile(r"^(\d{1,4}):([0-5]?\d)(?::([0-5]?\d))?$")
_UNITS = re.compile(r"^(?:(\d{1,4}(?:[.,]\d+)?)\s*h)?\s*(?:(\d{1,6})\s*(?:min|m)?)?$", re.IGNORECASE)
_HOURS = re.compile(r"^\d{1,4}(?:[.,]\d+)?$")


def parse_duration(raw: str) -> timedelta | None:
    """
    A duration as people type it: ``1:30`` or ``1:30:15`` (hours, minutes,
    seconds), ``1h30``, ``1h 30m``, ``45m``, or hours alone (``2``, ``1.5``);
    None when empty; refused otherwise.
    """
    text = raw.strip()
    if not text:
        return None
    duration = _duration(text)
    if duration is None:
        raise Refused(_("“%(value)s” is not a duration (such as 1:30).") % {"value": text}, code=Code.INVALID)
    if duration > limits.ENTRY_MAX_LENGTH:
        raise Refused(
            _("An entry is at most %(days)s days long.") % {"days": limits.ENTRY_MAX_LENGTH.days}, code=Code.INVALID
        )
    return duration


def _duration(text: str) -> timedelta | None:
    try:
        if clock := _CLOCK.match(text):
            hours, minutes, seconds = (int(part or 0) for part in clock.groups())
            return timedelta(hours=hours, minutes=minutes, seconds=seconds)
        if _HOURS.match(text):
            return timedelta(hours=float(text.replace(",", ".")))
        units = _UNITS.match(text)
        if units and any(units.groups()):
            hours_text, minutes_text = units.groups()
            return timedelta(hours=float((hours_text or "0").replace(",", ".")), minutes=int(minutes_text or 0))
    except OverflowError:  # more days than a duration holds
        return timedelta.max
    return None


# The week a page or a form is about ---------------------------------------------


def asked_day(value: str | None) -> date | None:
    """The day a query parameter names (YYYY-MM-DD), None when absent, not a date, or too near either end of time."""
    if not value:
        return None
    try:
        day = parse_date(value.strip())
    except ValueError:
        return None
    if day is None or not limits.FIRST_DAY + timedelta(days=7) <= day <= limits.LAST_DAY - timedelta(days=7):
        return None
    return day


def asked_week(value: str | None) -> date | None:
    """The Monday of the week a ``week`` parameter names (any of its days), None when absent or not a date."""
    day = asked_day(value)
    return None if day is None else days.week_of(day)[0]


def week_of_request(request: HtmxHttpRequest) -> date | None:
    """
    The week the action came from: the form's ``week`` field, else, for
    htmx, the ``week`` of the page it was sent from; None for the current week.
    """
    if request.method == "POST" and (monday := asked_week(request.POST.get("week"))):
        return monday
    current = request.htmx.current_url if request.htmx else None
    if current:
        return asked_week(parse_qs(urlsplit(current).query).get("week", [""])[0])
    return None


def home_url(monday: date | None = None) -> str:
    """The people's page, on the week starting ``monday`` (None: the current week)."""
    url = reverse("home")
    return f"{url}?week={monday.isoformat()}" if monday else url
