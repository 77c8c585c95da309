import pytest
from django.core.checks import run_checks
from django.test import override_settings


def errors():
    # databases=[]: the settings' checks, without Django's checks that query a database.
    return {error.id: error.msg for error in run_checks(databases=[]) if error.id.startswith("timesheet.")}


def test_default_settings_pass():
    assert errors() == {}


@pytest.mark.parametrize(
    "setting, value, check_id",
    [
        ("INCREMENT_TIME_SECONDS", 0, "timesheet.E001"),
        ("INCREMENT_TIME_SECONDS", -5, "timesheet.E001"),
        ("INCREMENT_TIME_SECONDS", "five", "timesheet.E001"),
        ("INCREMENT_TIME_SECONDS", float("nan"), "timesheet.E001"),
        ("INCREMENT_TIME_SECONDS", True, "timesheet.E001"),
        ("TICKER_BATCH_SIZE", 0, "timesheet.E002"),
        ("TICKER_BATCH_SIZE", 2.5, "timesheet.E002"),
        ("TICKER_MAX_FAILURE_SECONDS", -1, "timesheet.E003"),
        ("FICHE_MAX_RUNNING_HOURS", 0, "timesheet.E004"),
        ("FICHE_MAX_RUNNING_HOURS", "all day", "timesheet.E004"),
    ],
)
def test_a_bad_setting_is_a_check_error_naming_it(setting, value, check_id):
    with override_settings(**{setting: value}):
        found = errors()
    assert list(found) == [check_id]
    assert found[check_id].startswith(f"{setting} must be ")
    assert repr(value) in found[check_id]


@pytest.mark.parametrize(
    "setting, value",
    [("INCREMENT_TIME_SECONDS", 0.5), ("TICKER_BATCH_SIZE", 1), ("FICHE_MAX_RUNNING_HOURS", 10)],
)
def test_good_values_pass(setting, value):
    with override_settings(**{setting: value}):
        assert errors() == {}
