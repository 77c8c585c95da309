"""System checks for every setting the timesheet app reads, so bad values fail at start."""

import math
from numbers import Real

from django.core.checks import Error, register

from . import conf


def _is_positive_number(value):
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


RULES = [
    # (setting, is valid, what it must be, check id)
    ("INCREMENT_TIME_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E001"),
    ("TICKER_BATCH_SIZE", _is_positive_int, "a positive whole number of rows", "timesheet.E002"),
    ("TICKER_MAX_FAILURE_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E003"),
    (
        "FICHE_MAX_RUNNING_HOURS",
        lambda value: value is None or _is_positive_number(value),
        "a positive number of hours, or unset for no limit",
        "timesheet.E004",
    ),
    ("TICKER_SHARDS", _is_positive_int, "a positive whole number of shards", "timesheet.E007"),
    ("STREAM_POLL_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E005"),
    ("STREAM_KEEPALIVE_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E006"),
]


@register()
def check_settings(app_configs=None, **kwargs):
    errors = []
    for name, is_valid, expected, check_id in RULES:
        value = conf.get(name)
        if not is_valid(value):
            errors.append(
                Error(
                    f"{name} must be {expected}; got {value!r}.",
                    hint=f"Set {name} in the environment or the settings to {expected}.",
                    id=check_id,
                )
            )
    return errors
