"""Reports as CSV and XLSX: the same rows as the API, with spreadsheet formulas neutralised."""

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

# A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...), @SUM(...)).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = ["period", "owner", "projet", "hours", "rounded_hours", "seconds", "rounded_seconds"]


def safe(value: str) -> str:
    """Text that a spreadsheet shows as text: a leading formula character is escaped with a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def report_rows(report: dict[str, Any], text: Callable[[str], str] = safe) -> Iterator[list[Any]]:
    """The header, a row per report row and the totals; names pass through ``text`` (``safe`` by default)."""
    yield HEADER
    for row in report["rows"]:
        yield [
            row["period"],
            text(row.get("owner", {}).get("username", "")),
            text(row.get("projet", {}).get("designation", "")),
            round(row["seconds"] / 3600, 4),
            round(row["rounded_seconds"] / 3600, 4),
            row["seconds"],
            row["rounded_seconds"],
        ]
    totals = report["totals"]
    yield [
        "total",
        "",
        "",
        round(totals["seconds"] / 3600, 4),
        round(totals["rounded_seconds"] / 3600, 4),
        totals["seconds"],
        totals["rounded_seconds"],
    ]


def spreadsheet_text(value: str) -> str:
    """
    Text for a spreadsheet's cell: control characters (not allowed there)
    dropped first, then a leading formula character escaped, so that no
    control character can hide a formula from ``safe``.
    """
    return safe(ILLEGAL_CHARACTERS_RE.sub("", value))


def as_csv(report: dict[str, Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(report_rows(report))
    return buffer.getvalue().encode()


def as_xlsx(report: dict[str, Any]) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("report")
    for row in report_rows(report, text=spreadsheet_text):
        sheet.append(row)
    rule = report["rounding"]
    sheet.append([])
    sheet.append(["rounding", rule["mode"], f"{rule['step_minutes']} min", rule["scope"]])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
