from datetime import datetime, timedelta

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def hms(value: timedelta | None) -> str:
    """A duration as H:MM:SS, hours unbounded; a negative one with a leading minus."""
    value = value or timedelta(0)
    sign, value = ("-", -value) if value < timedelta(0) else ("", value)
    seconds = int(value.total_seconds())
    return f"{sign}{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@register.filter
def seconds_hms(value) -> str:
    """Seconds (a number) as H:MM:SS."""
    return hms(timedelta(seconds=float(value or 0)))


@register.filter
def hms_ms(value: timedelta | None) -> str:
    """A duration as H:MM:SS.mmm (milliseconds, truncated), hours unbounded, a leading minus if negative; None: ""."""
    if value is None:
        return ""
    sign, value = ("-", -value) if value < timedelta(0) else ("", value)
    milliseconds = value // timedelta(milliseconds=1)
    seconds, millis = divmod(milliseconds, 1000)
    return f"{sign}{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}.{millis:03d}"


@register.filter
def instant(value: datetime | None) -> str:
    """An instant in the current time zone as YYYY-MM-DD HH:MM, whatever the language; None: ""."""
    if not isinstance(value, datetime):
        return ""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")
