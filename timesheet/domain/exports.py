"""
Reports as CSV and XLSX: the same rows as the API, with spreadsheet formulas
neutralised, written row by row. Their columns: period, owner, the client
(when grouped by client), project, the time in hours and in seconds (exact,
rounded, billable) and the amount of the billable time, its column named with
the currency (``amount_EUR``): the report's decimal string in a CSV, a number
with the currency's decimals in a spreadsheet.

An export streams: its rows come from ``reports.report_rows`` (read from the
report's query in chunks), a CSV goes out in chunks of rows as they are
written, and an XLSX (a zip, whole before it can be sent) is written row by
row to an anonymous temporary file, then sent in chunks; the file is gone
once closed. So an export holds a bounded amount of memory, whatever its size.

Caps: past ``EXPORT_MAX_ROWS`` rows an export stops with a marked last row
(``truncated`` and a message, in place of the totals); ``slots`` counts the
exports running at once in this process, at most ``EXPORT_MAX_CONCURRENT``.
"""

import csv
import io
import tempfile
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from decimal import Decimal
from itertools import chain
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.utils.translation import gettext as _
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from timesheet.core import conf
from timesheet.domain import rates
from timesheet.models import Rounding

# A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...), @SUM(...)).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
# The time columns of every export: each duration in hours, then in seconds (exact, rounded, billable).
TIMES = ["hours", "rounded_hours", "seconds", "rounded_seconds", "billable_hours", "billable_seconds"]
# The spreadsheet's hours columns hold durations (a fraction of a day) shown as such; the seconds stay plain numbers.
DURATION_FORMAT = "[h]:mm:ss"
DURATIONS = (("hours", "seconds"), ("rounded_hours", "rounded_seconds"), ("billable_hours", "billable_seconds"))
AMOUNT = "amount_"  # the amount's column, named with the currency: amount_EUR
TRUNCATED = "truncated"  # the first cell of the last row of an export stopped at EXPORT_MAX_ROWS
CHUNK_ROWS = 1000  # CSV rows sent in one chunk
FILE_CHUNK_BYTES = 64 * 1024  # XLSX bytes sent in one chunk
RETRY_AFTER_SECONDS = 30  # what a refused export is told to wait


def header(*, client: bool = False, currency: str | None = None) -> list[str]:
    """
    An export's columns: period, owner, the client when the rows are grouped
    by client, project, the times, and the amount of the billable time in
    ``currency`` (the site's by default), its code in the column's name.
    """
    return [
        "period",
        "owner",
        *(["client"] if client else []),
        "project",
        *TIMES,
        AMOUNT + (currency or rates.currency()),
    ]


def safe(value: str) -> str:
    """Text that a spreadsheet shows as text: a leading formula character is escaped with a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def spreadsheet_text(value: str) -> str:
    """
    Text for a spreadsheet's cell: control characters (not allowed there)
    dropped first, then a leading formula character escaped, so that no
    control character can hide a formula from ``safe``.
    """
    return safe(ILLEGAL_CHARACTERS_RE.sub("", value))


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 4)


def _figures(sums: Mapping[str, Any]) -> list[Any]:
    """The time columns and the amount of a row or of the totals."""
    seconds, rounded, billable = sums["seconds"], sums["rounded_seconds"], sums["billable_seconds"]
    return [_hours(seconds), _hours(rounded), seconds, rounded, _hours(billable), billable, sums["amount"]]


def table(
    rows: Iterable[dict[str, Any]],
    text: Callable[[str], str] = safe,
    max_rows: int | None = None,
    *,
    client: bool = False,
    currency: str | None = None,
) -> Iterator[list[Any]]:
    """
    The header, a line per report row and the totals, from ``rows`` as
    ``reports.report_rows`` gives them (its rows, then ``{"totals": ...}``);
    names pass through ``text``; ``client``: the rows are grouped by client,
    which has its column. Amounts are the report's decimal strings. Past
    ``max_rows`` rows: a marked last line (``truncated`` and why) in place of
    the rest and of the totals.
    """
    columns = header(client=client, currency=currency)
    yield columns
    blanks = [""] * (columns.index("project") - 1)
    written = 0
    for row in rows:
        if "totals" in row:
            yield ["total", *blanks, "", *_figures(row["totals"])]
            return
        if max_rows is not None and written >= max_rows:
            yield truncated_line(max_rows, len(columns))
            return
        written += 1
        names = [text(row.get("owner", {}).get("username", ""))]
        if client:
            names.append(text(row.get("client", {}).get("name", "")))
        yield [row["period"], *names, text(row.get("projet", {}).get("designation", "")), *_figures(row)]


def truncated_line(max_rows: int, width: int | None = None) -> list[Any]:
    """The last line of an export stopped at ``max_rows`` rows (``width`` cells): no totals, and why."""
    message = _(
        "The export stops here: it holds at most %(rows)s rows. Export a shorter range, or group by week or month."
    ) % {"rows": max_rows}
    return [TRUNCATED, message, *[""] * ((width or len(header())) - 2)]


def _with_totals(report: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    return chain(report["rows"], [{"totals": report["totals"]}])


def _layout(report: Mapping[str, Any]) -> dict[str, Any]:
    """What a whole report's export is laid out by: its client column, its currency."""
    return {"client": "client" in report.get("by", ()), "currency": report.get("currency")}


def report_rows(report: dict[str, Any], text: Callable[[str], str] = safe) -> Iterator[list[Any]]:
    """The header, a row per report row and the totals; names pass through ``text`` (``safe`` by default)."""
    return table(_with_totals(report), text, **_layout(report))


def _close(rows: Iterable[Any]) -> None:
    close = getattr(rows, "close", None)
    if close is not None:
        close()


def csv_chunks(
    rows: Iterable[dict[str, Any]],
    *,
    max_rows: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    client: bool = False,
    currency: str | None = None,
) -> Iterator[bytes]:
    """
    The CSV of ``rows`` (see ``table``, and ``client`` and ``currency``
    there) in UTF-8 chunks of ``chunk_rows`` lines; ``rows`` is closed at the end.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    try:
        for number, line in enumerate(table(rows, max_rows=max_rows, client=client, currency=currency), 1):
            writer.writerow(line)
            if number % chunk_rows == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode()
    finally:
        _close(rows)


def as_csv(report: dict[str, Any]) -> bytes:
    return b"".join(csv_chunks(_with_totals(report), **_layout(report)))


def write_xlsx(
    rows: Iterable[dict[str, Any]],
    rounding: Mapping[str, Any],
    target: IO[bytes],
    *,
    max_rows: int | None = None,
    client: bool = False,
    currency: str | None = None,
) -> None:
    """
    The spreadsheet of ``rows`` (see ``table``, and ``client`` and
    ``currency`` there) and the ``rounding`` applied, written to ``target``
    row by row (openpyxl's write-only mode keeps rows in a temporary file,
    not in memory); ``rows`` is closed at the end.
    """
    try:
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("report")
        lines = table(rows, text=spreadsheet_text, max_rows=max_rows, client=client, currency=currency)
        columns = next(lines)
        sheet.append(columns)
        spreadsheet_line = _spreadsheet_line(sheet, columns)
        for line in lines:
            sheet.append(spreadsheet_line(line))
        sheet.append([])
        sheet.append(rounding_line(rounding))
        workbook.save(target)
    finally:
        _close(rows)


def _spreadsheet_line(sheet: Any, columns: list[str]) -> Callable[[list[Any]], list[Any]]:
    """
    A function from a line of ``table`` to the spreadsheet's: on a row or the
    totals, the hours columns become durations made from the exact seconds,
    formatted ``DURATION_FORMAT``, and the amount a number with the
    currency's decimals; a truncated line is left as it is.
    """
    pairs = [(columns.index(hours), columns.index(seconds)) for hours, seconds in DURATIONS]
    amount = len(columns) - 1
    places = rates.decimals(columns[amount].removeprefix(AMOUNT))
    money_format = "0." + "0" * places if places else "0"

    def convert(line: list[Any]) -> list[Any]:
        if line[0] == TRUNCATED or not all(isinstance(line[seconds], int | float) for _hours, seconds in pairs):
            return line
        line = list(line)
        for hours, seconds in pairs:
            cell = WriteOnlyCell(sheet, value=timedelta(seconds=line[seconds]))
            cell.number_format = DURATION_FORMAT
            line[hours] = cell
        cell = WriteOnlyCell(sheet, value=Decimal(line[amount]))
        cell.number_format = money_format
        line[amount] = cell
        return line

    return convert


def rounding_line(rounding: Mapping[str, Any]) -> list[Any]:
    """The spreadsheet's last line: the rounding applied, its step and scope only when it rounds."""
    if rounding["mode"] == Rounding.NONE:
        return ["rounding", str(Rounding.NONE)]
    return ["rounding", rounding["mode"], f"{rounding['step_minutes']} min", rounding["scope"]]


def as_xlsx(report: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    write_xlsx(_with_totals(report), report["rounding"], buffer, **_layout(report))
    return buffer.getvalue()


def xlsx_chunks(
    rows: Iterable[dict[str, Any]],
    rounding: Callable[[], Mapping[str, Any]],
    *,
    max_rows: int | None = None,
    chunk_bytes: int = FILE_CHUNK_BYTES,
    client: bool = False,
    currency: str | None = None,
) -> Iterator[bytes]:
    """
    The spreadsheet of ``rows`` in chunks of ``chunk_bytes``: written whole
    to an anonymous temporary file first (a zip is complete before it can be
    read), then read back; the file is gone when this ends or is closed.
    ``rounding`` gives the rule applied, read when the file is written.
    """
    with tempfile.TemporaryFile(prefix="timesheet-export-", suffix=".xlsx") as file:
        write_xlsx(rows, rounding(), file, max_rows=max_rows, client=client, currency=currency)
        file.seek(0)
        while chunk := file.read(chunk_bytes):
            yield chunk


class Slots:
    """The exports running at once in this process: at most ``EXPORT_MAX_CONCURRENT``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # taken on the event loop, given back from any thread
        self.running = 0

    def take(self) -> Callable[[], None] | None:
        """One slot, as the function that gives it back (once, however often called); None when all are taken."""
        with self._lock:
            if self.running >= int(conf.get("EXPORT_MAX_CONCURRENT")):
                return None
            self.running += 1
        given_back = threading.Event()

        def give_back() -> None:
            with self._lock:
                if not given_back.is_set():
                    given_back.set()
                    self.running -= 1

        return give_back

    def refusal_message(self) -> str:
        return _("Too many exports are running: try again in %(seconds)s seconds.") % {"seconds": RETRY_AFTER_SECONDS}


slots = Slots()


def _run_all(cleanups: list[Callable[[], object]]) -> None:
    for cleanup in cleanups:
        cleanup()


class Streamed:
    """
    What a streaming response consumes, asynchronously: ``chunks``, a
    synchronous iterator (a report's rows, a file), advanced one chunk at a
    time off the event loop on the request's own thread (``sync_to_async``,
    thread-sensitive: the cursor a chunk reads from stays on the thread that
    opened it, and the loop serves other requests meanwhile). ``chunks`` is
    closed on that thread when the stream ends, early or not; ``close()``
    (which Django calls when the response ends, even one never iterated) runs
    ``cleanups`` once, as does this object's collection if nobody called it.
    """

    def __init__(self, chunks: Iterator[bytes], *cleanups: Callable[[], object]) -> None:
        self._chunks = chunks
        self._finalizer = weakref.finalize(self, _run_all, list(cleanups))

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream()

    def _next(self) -> bytes | None:
        return next(self._chunks, None)

    def _close_chunks(self) -> None:
        _close(self._chunks)

    async def _stream(self) -> AsyncIterator[bytes]:
        step = sync_to_async(self._next, thread_sensitive=True)
        try:
            while (chunk := await step()) is not None:
                yield chunk
        finally:
            # After any step still running on the thread (a client gone mid-chunk).
            await sync_to_async(self._close_chunks, thread_sensitive=True)()
            self.close()

    def close(self) -> None:
        self._finalizer()
