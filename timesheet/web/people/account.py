"""
The settings page at ``/settings``: what a person sets once, apart from
their time: their time zone, the first day of their week, their language (the page's, and their emails'),
their reminders (a forgotten timer, the end of their working day, their
working days), which notifications reach them where, and their API tokens (a
new one shown once, in a box of its own with a button to copy it).
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.dates import WEEKDAYS
from django.utils.translation import gettext as _
from django.views.i18n import set_language as django_set_language

from timesheet.core import conf, limits
from timesheet.domain import days, locks, notifications, profiles, tokens
from timesheet.domain.errors import Code, Refused
from timesheet.models import ApiToken, Channel, NotificationKind, Profile, Weekday, default_end_of_day
from timesheet.web.people.common import HtmxHttpRequest, form_time, post_only, signed_in
from timesheet.web.people.page import bell_context

# The tag of the message that carries a new token to the settings page, where it is shown once.
NEW_TOKEN = "new-token"


def hours_text(hours: Decimal | None) -> str:
    """Hours as a person types them: ``4``, ``0.5``, ``1.25``; empty for None."""
    return "" if hours is None else f"{hours.normalize():f}"


def _reminders_context(user: Any) -> dict[str, Any]:
    """The reminders' form as the person last saved it (the site's defaults without a profile)."""
    profile = Profile.objects.filter(user=user).first()
    end_of_day = profile.end_of_day if profile else default_end_of_day()
    working = profile.working_days if profile else "12345"
    return {
        "running_hours": hours_text(profile.reminder_running_hours if profile else None),
        "site_running_hours": hours_text(conf.reminder_running_hours()),
        "end_of_day": end_of_day.strftime("%H:%M") if end_of_day else "",
        # Monday first, as ISO numbers them (1 to 7).
        "working_days": [(str(number + 1), WEEKDAYS[number], str(number + 1) in working) for number in range(7)],
    }


def _preferences_context(user: Any) -> list[dict[str, Any]]:
    """Each kind of notification and the channels the person gets it on."""
    chosen = notifications.preferences(user=user)
    channels = [(Channel.EMAIL.value, _("Email")), (Channel.PAGE.value, _("This page"))]
    return [
        {
            "kind": kind,
            "label": label,
            "channels": [(channel, name, channel in chosen.get(kind, set())) for channel, name in channels],
        }
        for kind, label in NotificationKind.choices
    ]


def _settings_page(request: HtmxHttpRequest, user: Any) -> TemplateResponse:
    zone = days.owner_zone(user.pk)
    shown = [message for message in messages.get_messages(request)]
    context = {
        "zone": zone,
        "bell": bell_context(user),
        "reminders": _reminders_context(user),
        "preferences": _preferences_context(user),
        "zones": days.all_time_zones(),
        "week_start": Profile.objects.filter(user=user).values_list("week_start", flat=True).first() or Weekday.MONDAY,
        "weekdays": Weekday.choices,
        # Weeks submitted or approved (or days locked): the first day of the week no longer changes.
        "week_start_held": locks.holds_time(user.pk) and not locks.may_override(user),
        "tokens": list(ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")),
        # A new token comes in a message of its own: shown in its box, never as text among the others.
        "new_token": next((message.message for message in shown if message.extra_tags == NEW_TOKEN), None),
        "page_messages": [message for message in shown if message.extra_tags != NEW_TOKEN],
        "limits": {
            "token_name": limits.TOKEN_NAME_MAX_LENGTH,
            "token_days": limits.TOKEN_MAX_LIFETIME.days,
            "token_default_days": limits.TOKEN_DEFAULT_LIFETIME.days,
        },
    }
    response = TemplateResponse(request, "timesheet/people/settings.html", context)
    with timezone.override(zone):
        response.render()
    return response


@signed_in
async def settings_page(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """The person's time zone, language and API tokens."""
    return await sync_to_async(_settings_page)(request, user)


@signed_in
@post_only
async def create_token(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """A personal API token, shown this once on the settings page."""
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
        messages.warning(request, raw, extra_tags=NEW_TOKEN)
    return redirect("settings")


@signed_in
@post_only
async def revoke_token(request: HtmxHttpRequest, user: Any, token_id: int) -> HttpResponseBase:
    return await _saved(request, lambda: tokens.arevoke_token(token_id=token_id, actor=user), _("Token revoked."))


@signed_in
@post_only
async def set_time_zone(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """The time zone the user's days are counted in."""
    name = request.POST.get("time_zone", "").strip()
    return await _saved(request, lambda: profiles.aset_time_zone(user=user, name=name), _("Time zone saved."))


@signed_in
@post_only
async def set_week_start(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """The first day of the user's weeks, for their weekly time sheets (1 Monday to 7 Sunday)."""
    chosen = request.POST.get("week_start", "")
    save = lambda: profiles.aset_week_start(user=user, week_start=chosen)  # noqa: E731
    return await _saved(request, save, _("First day of the week saved."))


async def _saved(request: HtmxHttpRequest, save: Callable[[], Awaitable[object]], done: str) -> HttpResponseBase:
    """Run one settings service, ``save`` (the form read inside it), then back to the settings with what happened."""
    try:
        await save()
    except Refused as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, done)
    return redirect("settings")


def _reminders_of(request: HtmxHttpRequest) -> dict[str, Any]:
    """
    The reminders' form as ``set_reminders`` takes it: hours before a
    forgotten timer (decimals with a point or a comma; empty for the site's),
    the end of the working day (empty for none), the working days checked.
    """
    raw = request.POST.get("running_hours", "").strip()
    try:
        hours = Decimal(raw.replace(",", ".")) if raw else None
    except InvalidOperation:
        raise Refused(_("“%(value)s” is not a number of hours.") % {"value": raw}, code=Code.INVALID) from None
    return {
        "running_hours": hours,
        "end_of_day": form_time(request, "end_of_day"),
        "working_days": "".join(sorted(set(request.POST.getlist("working_days")))),
    }


@signed_in
@post_only
async def set_reminders(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """When the person is reminded: a forgotten timer, a fiche still running at the end of their working day."""
    return await _saved(
        request, lambda: notifications.aset_reminders(user=user, **_reminders_of(request)), _("Reminders saved.")
    )


@signed_in
@post_only
async def set_notification_preferences(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """Which kinds of notification reach the person by email, and on this page (the bell)."""
    choices = {kind: set(request.POST.getlist(kind)) for kind in NotificationKind.values}
    save = lambda: notifications.aset_preferences(user=user, choices=choices)  # noqa: E731
    return await _saved(request, save, _("Notifications saved."))


@signed_in
@post_only
async def set_language(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """The page's language (Django's cookie) and the person's, for the emails they are sent."""
    try:
        await notifications.aset_language(user=user, language=request.POST.get("language", ""))
    except Refused as refused:
        messages.error(request, refused.message)
        return redirect("settings")
    return await sync_to_async(django_set_language)(request)
