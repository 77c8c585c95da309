"""Report exports: CSV and XLSX rows, spreadsheet formulas neutralised, control characters dropped."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from timesheet.domain import exports


def report(*rows, rounding=None):
    """A report of ``rows`` (period, owner, project, times): billable and amount default to all billable, 0.00."""
    rows = [
        (period, owner, projet, {"billable_seconds": times["seconds"], "amount": "0.00", **times})
        for period, owner, projet, times in rows
    ]
    return {
        "rows": [
            {"period": period, "owner": {"username": owner}, "projet": {"designation": projet}, **times}
            for period, owner, projet, times in rows
        ],
        "totals": {
            "seconds": sum(times["seconds"] for *_, times in rows),
            "rounded_seconds": sum(times["rounded_seconds"] for *_, times in rows),
            "billable_seconds": sum(times["billable_seconds"] for *_, times in rows),
            "amount": str(sum(Decimal(times["amount"]) for *_, times in rows) or Decimal("0.00")),
        },
        "rounding": rounding or {"mode": "up", "step_minutes": 15, "scope": "group"},
        "currency": "EUR",
        "by": ["owner", "projet"],
    }


HEADER = exports.header(currency="EUR")


def sheet_of(data):
    return load_workbook(io.BytesIO(data)).active


@pytest.mark.parametrize("text", ["=1+1", "+33 6", "-2", "@SUM(A1)", "\tcmd", "\rcmd", "="])
def test_a_leading_formula_character_is_escaped_with_a_quote(text):
    assert exports.safe(text) == "'" + text


@pytest.mark.parametrize("value", ["alice", "a=b", "", " =1", "'déjà", 3, 1.5, None])
def test_anything_else_is_left_alone(value):
    assert exports.safe(value) == value


def test_rows_are_the_header_each_row_and_the_totals():
    rows = list(
        exports.report_rows(report(("2026-01-05", "alice", "Refonte", {"seconds": 5400, "rounded_seconds": 6300})))
    )
    assert rows == [
        HEADER,
        ["2026-01-05", "alice", "Refonte", 1.5, 1.75, 5400, 6300, 1.5, 5400, "0.00"],
        ["total", "", "", 1.5, 1.75, 5400, 6300, 1.5, 5400, "0.00"],
    ]


def test_hours_are_rounded_to_four_decimals():
    (_, row, _) = exports.report_rows(report(("2026-01-05", "a", "p", {"seconds": 1, "rounded_seconds": 900})))
    assert row[3:5] == [0.0003, 0.25]


def test_a_row_grouped_without_owner_or_project_leaves_them_empty():
    times = {"seconds": 3600, "rounded_seconds": 3600, "billable_seconds": 0, "amount": "0.00"}
    data = {"rows": [{"period": "2026-W02", **times}], "totals": times, "by": [], "currency": "EUR"}
    assert list(exports.report_rows(data))[1] == ["2026-W02", "", "", 1.0, 1.0, 3600, 3600, 0.0, 0, "0.00"]


def test_the_csv_holds_the_rows_with_formulas_neutralised():
    data = report(("2026-01-05", "@bob", '=HYPERLINK("http://x")', {"seconds": 60, "rounded_seconds": 900}))
    assert list(csv.reader(io.StringIO(exports.as_csv(data).decode()))) == [
        HEADER,
        ["2026-01-05", "'@bob", '\'=HYPERLINK("http://x")', "0.0167", "0.25", "60", "900", "0.0167", "60", "0.00"],
        ["total", "", "", "0.0167", "0.25", "60", "900", "0.0167", "60", "0.00"],
    ]


def test_the_csv_is_utf8():
    data = report(("2026-01-05", "zoé", "Déménagement", {"seconds": 0, "rounded_seconds": 0}))
    assert "zoé,Déménagement".encode() in exports.as_csv(data)


def test_the_spreadsheet_holds_the_rows_the_totals_and_the_rounding():
    data = report(("2026-01-05", "-carol", "Refonte", {"seconds": 5400, "rounded_seconds": 6300}))
    sheet = sheet_of(exports.as_xlsx(data))
    hours = timedelta(hours=1.5)
    assert list(sheet.iter_rows(values_only=True)) == [
        tuple(HEADER),
        ("2026-01-05", "'-carol", "Refonte", hours, timedelta(hours=1.75), 5400, 6300, hours, 5400, 0),
        ("total", None, None, hours, timedelta(hours=1.75), 5400, 6300, hours, 5400, 0),
        (None,) * 10,
        ("rounding", "up", "15 min", "group", *(None,) * 6),
    ]
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_control_characters_are_dropped_from_the_spreadsheet_but_kept_in_the_csv():
    data = report(("2026-01-05", "a\x07b\x1f", "p\x00\x0bq\tr", {"seconds": 0, "rounded_seconds": 0}))
    assert list(sheet_of(exports.as_xlsx(data)).iter_rows(values_only=True))[1][1:3] == ("ab", "pq\tr")
    assert list(csv.reader(io.StringIO(exports.as_csv(data).decode())))[1][1:3] == ["a\x07b\x1f", "p\x00\x0bq\tr"]


@pytest.mark.parametrize("name", ['\x00=HYPERLINK("http://x")', "\x07\x1b=1+1"])
def test_a_formula_behind_a_control_character_stays_text_in_the_spreadsheet(name):
    data = report(("2026-01-05", name, "p", {"seconds": 0, "rounded_seconds": 0}))
    cell = sheet_of(exports.as_xlsx(data))["B2"]
    assert (cell.data_type, cell.value) == ("s", "'" + name.lstrip("\x00\x07\x1b"))


# Headers, the rounding line and durations -------------------------------------------------------


def test_the_english_headers_name_the_project_column_project():
    assert HEADER == [
        "period",
        "owner",
        "project",
        "hours",
        "rounded_hours",
        "seconds",
        "rounded_seconds",
        "billable_hours",
        "billable_seconds",
        "amount_EUR",
    ]
    data = report(("2026-01-05", "alice", "Refonte", {"seconds": 60, "rounded_seconds": 60}))
    assert next(csv.reader(io.StringIO(exports.as_csv(data).decode())))[2] == "project"
    assert next(sheet_of(exports.as_xlsx(data)).iter_rows(values_only=True))[2] == "project"


def test_the_spreadsheet_prints_no_step_when_nothing_is_rounded():
    data = report(
        ("2026-01-05", "a", "p", {"seconds": 60, "rounded_seconds": 60}),
        rounding={"mode": "none", "step_minutes": 15, "scope": "group"},
    )
    last = list(sheet_of(exports.as_xlsx(data)).iter_rows(values_only=True))[-1]
    assert last == ("rounding", "none", *(None,) * 8)


def test_the_spreadsheets_durations_have_a_duration_format_and_seconds_stay_numbers():
    data = report(("2026-01-05", "a", "p", {"seconds": 5400.25, "rounded_seconds": 6300}))
    sheet = sheet_of(exports.as_xlsx(data))
    for line in (2, 3):  # the row, the totals
        hours, rounded, seconds, rounded_seconds = (sheet.cell(line, column) for column in (4, 5, 6, 7))
        assert hours.number_format == rounded.number_format == exports.DURATION_FORMAT == "[h]:mm:ss"
        assert hours.is_date and rounded.is_date  # what a spreadsheet shows as a duration
        assert hours.value == pytest.approx(timedelta(seconds=5400.25), abs=timedelta(milliseconds=1))
        assert rounded.value == timedelta(seconds=6300)
        assert (seconds.value, rounded_seconds.value) == (5400.25, 6300)
        assert seconds.number_format == rounded_seconds.number_format == "General"


# Billable time, amounts and clients ----------------------------------------------------------------


def test_the_amount_column_is_named_with_the_currency_and_the_client_column_comes_with_by_client(settings):
    settings.CURRENCY = "JPY"
    assert exports.header()[-1] == "amount_JPY"
    assert exports.header(client=True)[:4] == ["period", "owner", "client", "project"]
    assert exports.header(currency="EUR")[-1] == "amount_EUR"


def by_client():
    times = {"seconds": 5400, "rounded_seconds": 5400, "billable_seconds": 3600, "amount": "1234.50"}
    return {
        "rows": [{"period": "2026-01", "client": {"id": 3, "name": "=Acme"}, **times}],
        "totals": times,
        "rounding": {"mode": "none", "step_minutes": 15, "scope": "group"},
        "currency": "EUR",
        "by": ["client"],
    }


def test_a_report_by_client_has_its_client_column_neutralised_and_its_billable_time_and_amount():
    lines = list(csv.reader(io.StringIO(exports.as_csv(by_client()).decode())))
    assert lines == [
        exports.header(client=True, currency="EUR"),
        ["2026-01", "", "'=Acme", "", "1.5", "1.5", "5400", "5400", "1.0", "3600", "1234.50"],
        ["total", "", "", "", "1.5", "1.5", "5400", "5400", "1.0", "3600", "1234.50"],
    ]


def test_the_spreadsheets_amounts_are_numbers_with_the_currencys_decimals():
    sheet = sheet_of(exports.as_xlsx(by_client()))
    for line in (2, 3):  # the row, the totals
        billable, amount = sheet.cell(line, 9), sheet.cell(line, 11)
        assert billable.value == timedelta(hours=1) and billable.number_format == exports.DURATION_FORMAT
        assert amount.value == 1234.5 and amount.number_format == "0.00"
        assert amount.data_type == "n"
