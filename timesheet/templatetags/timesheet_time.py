from datetime import timedelta

from django import template

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
