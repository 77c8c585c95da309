"""Reports as CSV and XLSX: the same rows as the API, with spreadsheet formulas neutralised."""

import csv
import io

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

# A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...), @SUM(...)).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = ["period", "owner", "projet", "hours", "rounded_hours", "seconds", "rounded_seconds"]


def safe(value):
    """Text that a spreadsheet shows as text: a leading formula character is escaped with a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def report_rows(report: dict):
    yield HEADER
    for row in report["rows"]:
        yield [
            row["period"],
            safe(row.get("owner", {}).get("username", "")),
            safe(row.get("projet", {}).get("designation", "")),
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


def as_csv(report: dict) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(report_rows(report))
    return buffer.getvalue().encode()


def as_xlsx(report: dict) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("report")
    for row in report_rows(report):
        # Control characters are not allowed in a spreadsheet's cells: dropped there.
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("", cell) if isinstance(cell, str) else cell for cell in row])
    rule = report["rounding"]
    sheet.append([])
    sheet.append(["rounding", rule["mode"], f"{rule['step_minutes']} min", rule["scope"]])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
