"""Test settings: the project's settings with what a test run needs changed."""

from settings import *  # noqa: F403
from settings import DATA_DIR, DATABASES

# A file rather than SQLite's in-memory default, so that the worker run as a
# subprocess by the tests sees the same database.
if DATABASES["default"]["ENGINE"] == "timesheet.core.sqlite":
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
FICHE_MAX_RUNNING_HOURS = None
# Most tests run many fiches of one owner at once; the limit's own tests set it.
FICHE_MAX_RUNNING_PER_OWNER = 0
