"""The API's reports: time per period, owner, client and project, and what the billable time is worth."""

from collections.abc import Callable, Generator, Iterator
from datetime import date, datetime
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any, Literal

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from ninja import Field, Query, Router, Schema

from timesheet.domain import exports, reports
from timesheet.web.api.common import ERRORS, ExactEncoder, Id, OwnerRef, ProjetRef, renderer
from timesheet.web.http import exports_busy

router = Router(tags=["reports"])


class ReportFilters(Schema):
    from_: date = Field(alias="from", description="First local day (YYYY-MM-DD).")
    to: date = Field(description="Last local day, included; at most 366 days after 'from'.")
    group: Literal["day", "week", "month"] = "day"
    by: str = Field(
        "owner,projet",
        description="Comma-separated dimensions of the rows: owner, client, projet, any of them or none.",
    )
    owner: Id | None = Field(None, description="Staff: one owner's rows (default: everyone's).")
    approved: bool = Field(False, description="Only the time of approved weeks (for payroll and billing).")


class ClientRef(Schema):
    id: int | None = Field(description="None for the projects of no client.")
    name: str


AMOUNT = (
    "What the billable time is worth in 'currency', a decimal string: each (day, owner, project) "
    "rounded half up to the minor unit once, every coarser row and the totals sums of those; "
    "of the exact time, whatever the time's rounding."
)


class ReportRow(Schema):
    period: str
    owner: OwnerRef | None = None
    client: ClientRef | None = Field(None, description="With by=client.")
    projet: ProjetRef | None = None
    seconds: float
    rounded_seconds: float
    billable_seconds: float = Field(description="The time of billable projects (exact).")
    amount: str = Field(description=AMOUNT)


class ReportTotals(Schema):
    seconds: float
    rounded_seconds: float
    billable_seconds: float
    amount: str = Field(description=AMOUNT)


class RoundingRule(Schema):
    mode: str
    step_minutes: int


class ReportRounding(RoundingRule):
    scope: str
    projects: dict[str, RoundingRule]


class ReportOut(Schema):
    rows: list[ReportRow]
    totals: ReportTotals
    rounding: ReportRounding
    currency: str = Field(description="The currency of the amounts (ISO 4217, the site's CURRENCY).")
    from_: str = Field(alias="from")
    to: str
    group: str
    by: list[str]
    approved: bool = Field(description="Whether only the time of approved weeks is counted.")
    server_time: datetime


# Rows rendered into one chunk of the streamed body.
ROWS_PER_CHUNK = 500


def report_request(user: Any, filters: ReportFilters) -> reports.ReportRequest:
    """The report ``filters`` ask for, of the rows ``user`` may see (sync: reads rights); refused when invalid."""
    return reports.report_request(
        user=user,
        first=filters.from_,
        last=filters.to,
        group=filters.group,
        by=filters.by,
        owner_id=filters.owner,
        approved=filters.approved,
    )


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A report's row as ``ReportRow`` gives it: with its owner, client and projet (None where not dimensions)."""
    return {
        "period": row["period"],
        "owner": row.get("owner"),
        "client": row.get("client"),
        "projet": row.get("projet"),
        "seconds": row["seconds"],
        "rounded_seconds": row["rounded_seconds"],
        "billable_seconds": row["billable_seconds"],
        "amount": row["amount"],
    }


def row_texts() -> Callable[[dict[str, Any]], str]:
    """
    A function from a report's row to the JSON text of ``row_json(row)`` as
    the renderer writes it inside the document: the same keys, separators,
    escapes and floats (``float.__repr__``, as json's). Each owner's,
    client's and project's text is made once while it is kept (the rows
    that show one share its dict), not each row's dict made and encoded again.
    """
    encode = ExactEncoder().encode
    number = float.__repr__
    # {id of a name's dict: (the dict, kept alive so that its id is not another's meanwhile, its text)}
    texts: dict[int, tuple[Any, str]] = {}

    def named(value: Any) -> str:
        if value is None:
            return "null"
        known = texts.get(id(value))
        if known is not None:
            return known[1]
        if len(texts) >= reports.NAMES_KEPT:
            texts.clear()
        text = flat_text(value) or encode(value)
        texts[id(value)] = (value, text)
        return text

    def row_text(row: dict[str, Any]) -> str:
        # The rounded and billable times are most often the time itself, the very same float.
        seconds, rounded, billable = row["seconds"], row["rounded_seconds"], row["billable_seconds"]
        seconds_text = number(seconds)
        rounded_text = seconds_text if rounded is seconds else number(rounded)
        billable_text = seconds_text if billable is seconds else number(billable)
        # A period's label and an amount are digits, "-", "W" and ".": nothing to escape.
        return (
            f'{{"period": "{row["period"]}", "owner": {named(row.get("owner"))}, '
            f'"client": {named(row.get("client"))}, "projet": {named(row.get("projet"))}, '
            f'"seconds": {seconds_text}, "rounded_seconds": {rounded_text}, '
            f'"billable_seconds": {billable_text}, "amount": "{row["amount"]}"}}'
        )

    return row_text


# Text as the renderer's encoder escapes it.
_string = encode_basestring_ascii if ExactEncoder().ensure_ascii else encode_basestring


def flat_text(value: dict[str, Any]) -> str | None:
    """
    The JSON text of a name's dict (text keys, int and text values), as the
    renderer writes it (ASCII, its separators); None for any other dict. A
    report of many people meets each name again in each period, after more
    names than are kept: its text is made again each time, at a third of
    the encoder's cost.
    """
    parts = []
    for key, item in value.items():
        if type(key) is not str:
            return None
        if type(item) is str:
            text = _string(item)
        elif type(item) is int:
            text = int.__repr__(item)
        else:
            return None
        parts.append(f"{_string(key)}: {text}")
    return "{" + ", ".join(parts) + "}"


def body_chunks(
    asked: reports.ReportRequest, *, rows_per_chunk: int = ROWS_PER_CHUNK, chunk_rows: int = reports.CHUNK_ROWS
) -> Generator[bytes]:
    """
    The report ``asked`` as ``ReportOut`` gives it, in UTF-8 chunks of
    ``rows_per_chunk`` rows: the very text the renderer makes of the whole
    document (``{"rows": [...], "totals": ..., ...}``, the same separators
    and escapes), made from the streamed rows, so that what is held is a
    chunk (and ``chunk_rows`` of the query's rows), whatever the report's
    size. The first chunk comes once the query has answered.
    """
    encode = ExactEncoder().encode
    row_text = row_texts()
    fields, rows = reports.report_stream(asked, chunk_rows=chunk_rows)
    try:
        parts = ['{"rows": [']
        count = 0
        totals: dict[str, Any] = {}
        for row in rows:
            if "totals" in row:
                totals = row["totals"]
                continue
            if count:
                parts.append(", ")
            parts.append(row_text(row))
            count += 1
            if count % rows_per_chunk == 0:
                yield "".join(parts).encode()
                parts = []
        parts.append("]")
        for name, value in {"totals": totals, **fields}.items():
            parts += [", ", encode(name), ": ", encode(value)]
        parts.append("}")
        yield "".join(parts).encode()
    finally:
        rows.close()


class _Started:
    """
    The chunks of a body whose first ones are made already (``made``), then
    the rest of ``chunks``; closed, it closes ``chunks``.
    """

    def __init__(self, made: list[bytes], chunks: Generator[bytes]) -> None:
        self._made = made
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._made:
            return self._made.pop(0)
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()


def started_body(user: Any, filters: ReportFilters) -> bytes | _Started:
    """
    The body of the report ``filters`` ask for (sync: reads rights and the
    database), its query run and its first chunk made before the response
    begins, so that its errors are the request's, not a broken body's: the
    whole body when it is one chunk, else its chunks.
    """
    chunks = body_chunks(report_request(user, filters), rows_per_chunk=ROWS_PER_CHUNK)
    first = next(chunks)
    second = next(chunks, None)
    if second is None:
        return first
    return _Started([first, second], chunks)


class JsonStream(StreamingHttpResponse):
    """
    A JSON document sent in chunks as they are made. ``content`` and
    ``text`` read the rest of it and give it whole, for a caller that wants
    it at once (the test client's ``json()``); a server sends the chunks.
    """

    @property
    def text(self) -> str:  # type: ignore[override]  # Django's raises: this one reads the stream
        return self.content.decode(self.charset or "utf-8")

    @property
    def content(self) -> bytes:  # type: ignore[override]  # Django's raises: this one reads the stream
        async def whole() -> bytes:
            return b"".join([chunk async for chunk in self.streaming_content])  # type: ignore[union-attr]

        if not self.is_async:
            return b"".join(self.streaming_content)  # type: ignore[arg-type]
        return async_to_sync(whole)()


@router.get(
    "/reports/",
    response={200: ReportOut, **ERRORS},
    by_alias=True,
    summary=(
        "Time per period (local days of each owner), owner, client and project, with billable time,"
        " amounts, totals and the rounding applied"
    ),
)
async def report(request, filters: Query[ReportFilters]):
    # Streamed as it is made (``body_chunks``: one chunk of rows held, whatever the report's size), each
    # chunk made off the event loop on the request's own thread, where the query's cursor is; a body of one
    # chunk (a few hundred rows) is sent whole. In ReportOut's shape, not validated by Ninja row by row: a
    # test holds the shape to the schema's. A response closed unread closes the body, and its cursor, on
    # that thread too.
    body = await sync_to_async(started_body)(request.auth, filters)
    content_type = f"{renderer.media_type}; charset={renderer.charset}"
    if isinstance(body, bytes):  # one chunk: sent whole, without a trip to the thread for each
        return HttpResponse(body, content_type=content_type)
    # A longer one holds its cursor and its thread while it is sent: at most EXPORT_MAX_CONCURRENT of them and
    # of the exports at once in this process, as an export; past that, its query closed, a 429.
    give_back = exports.slots.take()
    if give_back is None:
        await sync_to_async(body.close)()
        return exports_busy()
    return JsonStream(exports.Streamed(body, body.close, give_back), content_type=content_type)
