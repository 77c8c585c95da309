"""The refusal of the rules: its codes, the one table from code to HTTP status, and its JSON body."""

import pytest

from timesheet.domain.errors import STATUS, Code, Refused, error_body


def test_every_code_has_an_http_status():
    assert set(STATUS) == set(Code)


@pytest.mark.parametrize(
    "code, status",
    [
        (Code.NOT_FOUND, 404),
        (Code.FORBIDDEN, 403),
        (Code.WRONG_STATE, 409),
        (Code.LIMIT_REACHED, 409),
        (Code.LOCKED, 409),
        (Code.SUBMITTED, 409),
        (Code.NEGATIVE_TIME, 409),
        (Code.OVERLAP, 409),
        (Code.INVALID, 400),
    ],
)
def test_a_refusal_answers_the_status_of_its_code(code, status):
    assert Refused("no", code=code).status == status


def test_codes_are_the_strings_the_api_shows():
    assert [str(code) for code in Code] == [
        "not_found",
        "forbidden",
        "wrong_state",
        "limit_reached",
        "locked",
        "submitted",
        "negative_time",
        "overlap",
        "budget_exhausted",
        "invalid",
    ]


def test_a_code_given_as_its_string_becomes_the_code():
    refused = Refused("Pas trouvée.", code="not_found")
    assert refused.code is Code.NOT_FOUND
    assert refused.status == 404


def test_an_unknown_code_is_refused_when_raised():
    with pytest.raises(ValueError, match="teapot"):
        Refused("no", code="teapot")


def test_a_refusal_keeps_its_message_as_text_and_as_the_exceptions():
    refused = Refused("La fiche 7 n'existe pas.", code=Code.NOT_FOUND)
    assert refused.message == "La fiche 7 n'existe pas."
    assert str(refused) == "La fiche 7 n'existe pas."
    assert refused.running_fiche_id is None


def test_the_body_of_a_refusal_is_its_message_and_code():
    assert Refused("Déjà en pause.", code=Code.WRONG_STATE).body() == {"error": "Déjà en pause.", "code": "wrong_state"}


def test_the_body_of_a_limit_names_the_fiche_that_runs():
    refused = Refused("Une fiche tourne déjà.", code=Code.LIMIT_REACHED, running_fiche_id=42)
    assert refused.body() == {"error": "Une fiche tourne déjà.", "code": "limit_reached", "running_fiche_id": 42}
    assert refused.status == 409


def test_an_error_body_leaves_out_the_extras_that_are_none_but_keeps_falsy_ones():
    assert error_body("Non.", retry_after=None, field="", count=0) == {"error": "Non.", "field": "", "count": 0}


def test_an_error_body_without_extras_is_the_message():
    assert error_body("Non.") == {"error": "Non."}
