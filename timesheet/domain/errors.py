"""
The one refusal of the rules, its codes, and the one table from code to HTTP
status that the API, the people's page and the admin share.

A rule that says no raises ``Refused`` with a ``Code``; nothing was changed.
Every front end shows ``message`` (translated where it was raised) and, over
HTTP, answers ``status`` with the body ``error_body`` builds.
"""

from enum import StrEnum
from typing import Any


class Code(StrEnum):
    NOT_FOUND = "not_found"  # no such thing, or one the actor may not see
    FORBIDDEN = "forbidden"  # visible, but not the actor's to do
    WRONG_STATE = "wrong_state"  # e.g. pausing a paused fiche
    LIMIT_REACHED = "limit_reached"  # the owner already runs as many fiches as allowed
    LOCKED = "locked"  # it would change a locked day or an approved week
    SUBMITTED = "submitted"  # it would change a week submitted for approval
    NEGATIVE_TIME = "negative_time"  # an adjustment below zero
    OVERLAP = "overlap"  # a person's time entries would overlap
    BUDGET_EXHAUSTED = "budget_exhausted"  # the project's budget stops its fiches at 100 % and is used up
    INVALID = "invalid"  # bad arguments


STATUS: dict[Code, int] = {
    Code.NOT_FOUND: 404,
    Code.FORBIDDEN: 403,
    Code.WRONG_STATE: 409,
    Code.LIMIT_REACHED: 409,
    Code.LOCKED: 409,
    Code.SUBMITTED: 409,
    Code.NEGATIVE_TIME: 409,
    Code.OVERLAP: 409,
    Code.BUDGET_EXHAUSTED: 409,
    Code.INVALID: 400,
}


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error the product answers: ``{"error": message}`` and any ``extra`` fields."""
    return {"error": message, **{name: value for name, value in extra.items() if value is not None}}


class Refused(Exception):
    """
    A change (or a read) that the rules refuse; nothing was changed. With
    ``Code.LIMIT_REACHED``, ``running_fiche_id`` names a fiche that runs.
    """

    def __init__(self, message: str, *, code: Code, running_fiche_id: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = Code(code)
        self.running_fiche_id = running_fiche_id

    @property
    def status(self) -> int:
        """The HTTP status that answers this refusal."""
        return STATUS[self.code]

    def body(self) -> dict[str, Any]:
        """The JSON body that answers this refusal."""
        return error_body(self.message, code=self.code.value, running_fiche_id=self.running_fiche_id)
