"""Report exports: CSV and XLSX rows, spreadsheet formulas neutralised, control characters dropped."""

import csv
import io
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from timesheet.domain import exports


def report(*rows, rounding=None):
    return {
        "rows": [
            {"period": period, "owner": {"username": owner}, "projet": {"designation": projet}, **times}
            for period, owner, projet, times in rows
        ],
        "totals": {
            "seconds": sum(times["seconds"] for *_, times in rows),
            "rounded_seconds": sum(times["rounded_seconds"] for *_, times in rows),
        },
        "rounding": rounding or {"mode": "up", "step_minutes": 15, "scope": "group"},
    }


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
        exports.HEADER,
        ["2026-01-05", "alice", "Refonte", 1.5, 1.75, 5400, 6300],
        ["total", "", "", 1.5, 1.75, 5400, 6300],
    ]


def test_hours_are_rounded_to_four_decimals():
    (_, row, _) = exports.report_rows(report(("2026-01-05", "a", "p", {"seconds": 1, "rounded_seconds": 900})))
    assert row[3:5] == [0.0003, 0.25]


def test_a_row_grouped_without_owner_or_project_leaves_them_empty():
    data = {
        "rows": [{"period": "2026-W02", "seconds": 3600, "rounded_seconds": 3600}],
        "totals": {"seconds": 3600, "rounded_seconds": 3600},
    }
    assert list(exports.report_rows(data))[1] == ["2026-W02", "", "", 1.0, 1.0, 3600, 3600]


def test_the_csv_holds_the_rows_with_formulas_neutralised():
    data = report(("2026-01-05", "@bob", '=HYPERLINK("http://x")', {"seconds": 60, "rounded_seconds": 900}))
    assert list(csv.reader(io.StringIO(exports.as_csv(data).decode()))) == [
        exports.HEADER,
        ["2026-01-05", "'@bob", '\'=HYPERLINK("http://x")', "0.0167", "0.25", "60", "900"],
        ["total", "", "", "0.0167", "0.25", "60", "900"],
    ]


def test_the_csv_is_utf8():
    data = report(("2026-01-05", "zoé", "Déménagement", {"seconds": 0, "rounded_seconds": 0}))
    assert "zoé,Déménagement".encode() in exports.as_csv(data)


def test_the_spreadsheet_holds_the_rows_the_totals_and_the_rounding():
    data = report(("2026-01-05", "-carol", "Refonte", {"seconds": 5400, "rounded_seconds": 6300}))
    sheet = sheet_of(exports.as_xlsx(data))
    assert list(sheet.iter_rows(values_only=True)) == [
        tuple(exports.HEADER),
        ("2026-01-05", "'-carol", "Refonte", timedelta(hours=1.5), timedelta(hours=1.75), 5400, 6300),
        ("total", None, None, timedelta(hours=1.5), timedelta(hours=1.75), 5400, 6300),
        (None,) * 7,
        ("rounding", "up", "15 min", "group", None, None, None),
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
    assert exports.HEADER == ["period", "owner", "project", "hours", "rounded_hours", "seconds", "rounded_seconds"]
    data = report(("2026-01-05", "alice", "Refonte", {"seconds": 60, "rounded_seconds": 60}))
    assert next(csv.reader(io.StringIO(exports.as_csv(data).decode())))[2] == "project"
    assert next(sheet_of(exports.as_xlsx(data)).iter_rows(values_only=True))[2] == "project"


def test_the_spreadsheet_prints_no_step_when_nothing_is_rounded():
    data = report(
        ("2026-01-05", "a", "p", {"seconds": 60, "rounded_seconds": 60}),
        rounding={"mode": "none", "step_minutes": 15, "scope": "group"},
    )
    last = list(sheet_of(exports.as_xlsx(data)).iter_rows(values_only=True))[-1]
    assert last == ("rounding", "none", None, None, None, None, None)


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
