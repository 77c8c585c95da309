"""
The settings page at ``/settings``: what a person sets once, apart from
their time: their time zone, their language, and their API tokens (a new
one shown once, in a box of its own with a button to copy it).
"""

from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from timesheet.core import limits
from timesheet.domain import days, profiles, tokens
from timesheet.domain.errors import Refused
from timesheet.models import ApiToken
from timesheet.web.people.common import HtmxHttpRequest, post_only, signed_in

# The tag of the message that carries a new token to the settings page, where it is shown once.
NEW_TOKEN = "new-token"


def _settings_page(request: HtmxHttpRequest, user: Any) -> TemplateResponse:
    zone = days.owner_zone(user.pk)
    shown = [message for message in messages.get_messages(request)]
    context = {
        "zone": zone,
        "zones": days.all_time_zones(),
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
    try:
        await tokens.arevoke_token(token_id=token_id, actor=user)
    except Refused as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, _("Token revoked."))
    return redirect("settings")


@signed_in
@post_only
async def set_time_zone(request: HtmxHttpRequest, user: Any) -> HttpResponseBase:
    """The time zone the user's days are counted in."""
    try:
        await profiles.aset_time_zone(user=user, name=request.POST.get("time_zone", "").strip())
    except Refused as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, _("Time zone saved."))
    return redirect("settings")
