"""
The API's notifications: one's own (reminders of a forgotten timer, of a
fiche still running at the end of the day, of days without time), newest
first, and marking them read. The same inbox as the people's page's bell:
the kinds a person turned off for the page are left out of both.
"""

from datetime import datetime
from typing import Any

from ninja import Field, Query, Router, Schema

from timesheet.domain import notifications
from timesheet.models import Notification, NotificationKind
from timesheet.web.api.common import ERRORS, Id

router = Router(tags=["notifications"])


class NotificationOut(Schema):
    id: int
    kind: NotificationKind
    title: str = Field(description="One line, in the language asked (Accept-Language).")
    occurred_at: datetime = Field(description="The exact instant of the fact (a threshold crossed, a day's end).")
    created_at: datetime
    read_at: datetime | None = Field(description="None while unread.")
    payload: dict[str, Any] = Field(
        description=(
            "What it is about: forgotten_timer {fiche, projet, libelle, running_since, threshold_hours}; "
            "end_of_day {fiche, projet, libelle, running_since, day, end_of_day}; missing_time {week, days}."
        )
    )


class NotificationFilters(Schema):
    unread: bool = Field(False, description="Only the unread ones.")
    limit: int = Field(50, ge=1, le=notifications.PAGE_MAX, description="How many, newest first.")
    before: Id | None = Field(None, description="The next page: those older than this id (the last one received).")


class ReadAll(Schema):
    read: int = Field(description="How many were marked read.")


def notification_json(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "title": notifications.title(notification),
        "occurred_at": notification.occurred_at,
        "created_at": notification.created_at,
        "read_at": notification.read_at,
        "payload": notification.payload or {},
    }


@router.get(
    "/notifications/",
    response={200: list[NotificationOut], **ERRORS},
    summary="Your notifications, newest first",
)
async def list_notifications(request, filters: Query[NotificationFilters]):
    found = await notifications.apage(
        user=request.auth, unread=filters.unread, limit=filters.limit, before_id=filters.before
    )
    return [notification_json(notification) for notification in found]


@router.post(
    "/notifications/read-all",
    response={200: ReadAll, **ERRORS},
    summary="Mark all your notifications read",
)
async def read_all_notifications(request):
    return {"read": await notifications.amark_all_read(actor=request.auth)}


@router.post(
    "/notifications/{id:notification_id}/read",
    response={200: NotificationOut, **ERRORS},
    summary="Mark one of your notifications read",
)
async def read_notification(request, notification_id: int):
    notification = await notifications.amark_read(notification_id=notification_id, actor=request.auth)
    return notification_json(notification)
