"""
Notifications as people read and choose them: their inbox (the bell, the
API), marking them read, which channels each kind goes to, and their
reminders' settings. The reminders themselves are found by
``reminders.py``; the channels that send (email, webhooks) by ``notify.py``.
"""

from collections.abc import Iterable
from datetime import time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Now
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from timesheet.core import wake
from timesheet.domain.errors import Code, Refused
from timesheet.domain.twins import async_twin
from timesheet.models import (
    Channel,
    Notification,
    NotificationKind,
    NotificationPreference,
    NotificationQuerySet,
    Profile,
)

# The channels a person chooses for each kind (webhooks are chosen by their subscriptions).
PERSONAL_CHANNELS = (Channel.EMAIL.value, Channel.PAGE.value)
# The most hours a person may let a fiche run before being told.
REMINDER_MAX_HOURS = Decimal(999)
PAGE_MAX = 200


def record(notifications: Iterable[Notification], *, batch_size: int | None = None) -> int:
    """
    Write ``notifications``, skipping those already written (the same
    recipient, subject and occurrence), and wake the live streams once they
    are committed; return how many were given to write.
    """
    made = Notification.objects.bulk_create(list(notifications), batch_size=batch_size, ignore_conflicts=True)
    if made:
        wake.announce("notifications")
    return len(made)


def _off(user_id: int, channel: str) -> QuerySet[NotificationPreference]:
    return NotificationPreference.objects.filter(user_id=user_id, channel=channel, enabled=False)


def on_page(user: Any) -> NotificationQuerySet:
    """The person's notifications of the kinds they get on the page."""
    hidden = _off(user.pk, Channel.PAGE).values("kind")
    return Notification.objects.visible_to(user).exclude(kind__in=hidden)


def page(*, user: Any, unread: bool = False, limit: int = 50, before_id: int | None = None) -> list[Notification]:
    """The person's notifications shown on the page, newest first: ``limit`` of them, before ``before_id`` if given."""
    if not 1 <= limit <= PAGE_MAX:
        raise Refused(_("Ask for 1 to %(max)s notifications at a time.") % {"max": PAGE_MAX}, code=Code.INVALID)
    found = on_page(user).select_related("fiche").order_by("-id")
    if unread:
        found = found.unread()
    if before_id is not None:
        found = found.filter(id__lt=before_id)
    return list(found[:limit])


def unread_count(*, user: Any) -> int:
    """How many of the person's page notifications are unread: the bell's figure."""
    return on_page(user).unread().count()


def mark_read(*, notification_id: int, actor: Any) -> Notification:
    """Mark one of the actor's notifications read (once: the first reading's instant stays); return it."""
    mine = Notification.objects.visible_to(actor).filter(pk=notification_id)
    mine.unread().update(read_at=Now())
    notification = mine.first()
    if notification is None:
        raise Refused(_("Notification %(id)s does not exist.") % {"id": notification_id}, code=Code.NOT_FOUND)
    return notification


def mark_all_read(*, actor: Any) -> int:
    """Mark every unread notification of the actor read; return how many."""
    return Notification.objects.visible_to(actor).unread().update(read_at=Now())


def title(notification: Notification) -> str:
    """The notification in one line, in the active language."""
    payload = notification.payload or {}
    name = payload.get("libelle") or payload.get("projet") or ""
    if notification.kind == NotificationKind.FORGOTTEN_TIMER:
        hours = payload.get("threshold_hours", 0)
        return _("“%(name)s” has been running for more than %(hours)s hours.") % {"name": name, "hours": f"{hours:g}"}
    if notification.kind == NotificationKind.END_OF_DAY:
        return _("“%(name)s” was still running at the end of your day (%(time)s).") % {
            "name": name,
            "time": payload.get("end_of_day", ""),
        }
    if notification.kind == NotificationKind.MISSING_TIME:
        missing = len(payload.get("days", []))
        return ngettext(
            "Week %(week)s: %(count)s working day without time.",
            "Week %(week)s: %(count)s working days without time.",
            missing,
        ) % {"week": payload.get("week", ""), "count": missing}
    if notification.kind == NotificationKind.BUDGET_CROSSED:
        return _("“%(name)s” has used %(percent)s %% of its budget.") % {
            "name": payload.get("name", ""),
            "percent": payload.get("percent", ""),
        }
    week = payload.get("week", "")
    if notification.kind == NotificationKind.WEEK_SUBMITTED:
        return _("%(name)s submitted week %(week)s (%(time)s).") % {
            "name": payload.get("owner_name", ""),
            "week": week,
            "time": hours_shown(payload.get("seconds")),
        }
    if notification.kind == NotificationKind.WEEK_APPROVED:
        return _("Your week %(week)s was approved by %(name)s.") % {"week": week, "name": payload.get("decided_by", "")}
    if notification.kind == NotificationKind.WEEK_REJECTED:
        return _("Your week %(week)s was rejected by %(name)s.") % {"week": week, "name": payload.get("decided_by", "")}
    if notification.kind == NotificationKind.WEEK_NOT_SUBMITTED:
        return _("Your week %(week)s is not submitted yet.") % {"week": week}
    if notification.kind == NotificationKind.WEEK_WAITING:
        count = payload.get("count", 0)
        return ngettext(
            "%(count)s week waits for your decision.",
            "%(count)s weeks wait for your decision.",
            count if isinstance(count, int) else 0,
        ) % {"count": count}
    return str(notification.get_kind_display())


def hours_shown(seconds: object) -> str:
    """A time in seconds as the week's notifications show it: hours and whole minutes ("32:15 h"), "" if none."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < 1e15:
        return ""
    hours, minutes = divmod(int(seconds) // 60, 60)
    return f"{hours}:{minutes:02d} h"


# Choices -------------------------------------------------------------------------


def channels_for(*, user_id: int, kind: str) -> set[str]:
    """The channels (email, page) the person gets ``kind`` on: every one they did not turn off."""
    off = set(
        NotificationPreference.objects.filter(user_id=user_id, kind=kind, enabled=False).values_list(
            "channel", flat=True
        )
    )
    return {channel for channel in PERSONAL_CHANNELS if channel not in off}


def turned_off(*, user_ids: Iterable[int], channel: str) -> set[tuple[int, str]]:
    """The (person, kind) pairs among ``user_ids`` that are turned off on ``channel``: one query for many people."""
    rows = NotificationPreference.objects.filter(user_id__in=set(user_ids), channel=channel, enabled=False)
    return set(rows.values_list("user_id", "kind"))


def preferences(*, user: Any) -> dict[str, set[str]]:
    """Each kind and the channels the person gets it on."""
    off: dict[str, set[str]] = {kind: set() for kind in NotificationKind.values}
    for kind, channel in NotificationPreference.objects.filter(user_id=user.pk, enabled=False).values_list(
        "kind", "channel"
    ):
        off.setdefault(kind, set()).add(channel)
    return {kind: {c for c in PERSONAL_CHANNELS if c not in off[kind]} for kind in NotificationKind.values}


def set_preferences(*, user: Any, choices: dict[str, set[str]]) -> None:
    """Set, for each kind in ``choices``, the channels the person gets it on (the others off)."""
    for kind, channels in choices.items():
        if kind not in NotificationKind.values:
            raise Refused(_("“%(kind)s” is not a kind of notification.") % {"kind": kind}, code=Code.INVALID)
        unknown = set(channels) - set(PERSONAL_CHANNELS)
        if unknown:
            raise Refused(_("“%(channel)s” is not a channel.") % {"channel": sorted(unknown)[0]}, code=Code.INVALID)
    with transaction.atomic():
        for kind, channels in choices.items():
            for channel in PERSONAL_CHANNELS:
                NotificationPreference.objects.update_or_create(
                    user_id=user.pk, kind=kind, channel=channel, defaults={"enabled": channel in channels}
                )


def disable(*, user_id: int, kind: str, channel: str) -> None:
    """Turn ``kind`` off on ``channel`` for the person (the unsubscribe link)."""
    if kind not in NotificationKind.values or channel not in PERSONAL_CHANNELS:
        raise Refused(_("Nothing to turn off."), code=Code.INVALID)
    NotificationPreference.objects.update_or_create(
        user_id=user_id, kind=kind, channel=channel, defaults={"enabled": False}
    )


def _profile(user: Any) -> Profile:
    profile, _created = Profile.objects.get_or_create(user_id=user.pk)
    return profile


def clean_running_hours(value: object) -> Decimal | None:
    """``value`` as hours before a forgotten-timer reminder (None: the site's; 0: none); refused otherwise."""
    if value is None or value == "":
        return None
    try:
        hours = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        hours = Decimal("NaN")
    if not hours.is_finite() or not Decimal(0) <= hours <= REMINDER_MAX_HOURS or hours != round(hours, 2):
        raise Refused(
            _("The hours before a reminder are a number from 0 to %(max)s, with at most two decimals.")
            % {"max": REMINDER_MAX_HOURS},
            code=Code.INVALID,
        )
    return hours


def clean_working_days(value: object) -> str:
    """``value`` (ISO weekdays as digits 1 to 7, "12345") sorted, without repeats; refused otherwise."""
    text = str(value or "")
    if not text.isascii() or not all(ch in "1234567" for ch in text) or len(text) > 7:
        raise Refused(_("Working days are ISO weekdays, 1 (Monday) to 7 (Sunday)."), code=Code.INVALID)
    return "".join(sorted(set(text)))


def set_reminders(*, user: Any, running_hours: Decimal | None, end_of_day: time | None, working_days: str) -> Profile:
    """The person's reminders: hours before a forgotten timer, end of the working day, working days; their profile."""
    hours = clean_running_hours(running_hours)
    if end_of_day is not None and not isinstance(end_of_day, time):
        raise Refused(_("The end of the working day is a time of day (such as 19:00)."), code=Code.INVALID)
    days = clean_working_days(working_days)
    with transaction.atomic():
        profile = _profile(user)
        profile.reminder_running_hours = hours
        profile.end_of_day = end_of_day
        profile.working_days = days
        profile.save(update_fields=["reminder_running_hours", "end_of_day", "working_days"])
    return profile


def set_language(*, user: Any, language: str) -> Profile:
    """The language of the person's emails (one of ``LANGUAGES``); their profile."""
    if language not in {code for code, _name in settings.LANGUAGES}:
        raise Refused(_("“%(language)s” is not a language of this site.") % {"language": language}, code=Code.INVALID)
    profile = _profile(user)
    Profile.objects.filter(pk=profile.pk).update(language=language)
    profile.language = language
    return profile


apage = async_twin(page)
aunread_count = async_twin(unread_count)
amark_read = async_twin(mark_read)
amark_all_read = async_twin(mark_all_read)
apreferences = async_twin(preferences)
aset_preferences = async_twin(set_preferences)
aset_reminders = async_twin(set_reminders)
aset_language = async_twin(set_language)
