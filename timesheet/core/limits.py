"""
The bounds every front end and rule shares, named once: a form, a schema and
a service that check the same input read the same constant.
"""

from datetime import date, timedelta

# A database id as a path, a form or a query string gives it: 1 to 18 ASCII digits (it fits 64 bits).
ID_MAX_DIGITS = 18
# A fiche's label (the model's max_length).
LABEL_MAX_LENGTH = 200
# An API token's name (the model's max_length).
TOKEN_NAME_MAX_LENGTH = 100
TOKEN_MAX_LIFETIME = timedelta(days=366)
TOKEN_DEFAULT_LIFETIME = timedelta(days=90)
# The days a report, a lock or an adjustment may name: every one of them has
# a whole local day on each side in any time zone, so no instant overflows.
FIRST_DAY = date(2, 1, 1)
LAST_DAY = date(9998, 12, 31)
# The longest report, in days.
REPORT_MAX_DAYS = 366
# The longest time entry a person types in or edits (a running fiche may run longer).
ENTRY_MAX_LENGTH = timedelta(days=31)
# The most time the database accepts in one fiche (a constraint): far below what its column can hold
# exactly, so that no sum ever overflows into a float. Adjustments are bounded far below it
# (FICHE_MAX_TOTAL_HOURS, at most a century's); running time would need centuries to reach it.
STORED_TIME_MAX = timedelta(days=366 * 1000)
# Free text kept with a lock and with an adjustment.
LOCK_REASON_MAX_LENGTH = 200
WEBHOOK_URL_MAX_LENGTH = 500
ADJUSTMENT_REASON_MAX_LENGTH = 1000


def parse_id(text: str) -> int | None:
    """``text`` as a database id, or None: 1 to ``ID_MAX_DIGITS`` ASCII digits (not "²", not "-1", not "1e3")."""
    text = text.strip()
    if text.isascii() and text.isdigit() and len(text) <= ID_MAX_DIGITS:
        return int(text)
    return None
