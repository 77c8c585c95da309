"""The user's report as CSV or XLSX, streamed: ``/reports/export.csv`` and ``/reports/export.xlsx``."""

from typing import Any

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase

from timesheet.core import conf
from timesheet.domain import days, exports, reports
from timesheet.domain.errors import Refused
from timesheet.web.http import exports_busy, refusal
from timesheet.web.people.common import HtmxHttpRequest, signed_in


def _report_request(request: HtmxHttpRequest, user: Any) -> reports.ReportRequest:
    """The export's range and grouping from the query (this week by default), for the user's own time."""
    monday, sunday = days.week_of(days.today_for(user.pk))
    return reports.request_from_query(user=user, query=request.GET, first=monday, last=sunday)


def _export_body(asked: reports.ReportRequest, kind: str, give_back: Any) -> exports.Streamed:
    """
    The export's chunks, made on the request's thread as the response is
    sent: the report's rows streamed from its query, as CSV chunks or an XLSX
    written to a temporary file; the slot given back when it ends.
    """
    max_rows = int(conf.get("EXPORT_MAX_ROWS"))
    rows = reports.report_rows(asked)
    client = "client" in asked.by  # the client's column
    if kind == "csv":
        return exports.Streamed(exports.csv_chunks(rows, max_rows=max_rows, client=client), give_back)
    return exports.Streamed(exports.xlsx_chunks(rows, reports.rounding_of, max_rows=max_rows, client=client), give_back)


@signed_in
async def export(request: HtmxHttpRequest, user: Any, kind: str) -> HttpResponseBase:
    """
    The report as CSV or XLSX: the user's own rows (staff: anyone's, with
    ?owner=), streamed. Past EXPORT_MAX_ROWS rows it ends with a marked
    ``truncated`` row; past EXPORT_MAX_CONCURRENT exports at once, a 429.
    """
    try:
        asked = await sync_to_async(_report_request)(request, user)
    except Refused as refused:
        return refusal(refused)
    give_back = exports.slots.take()
    if give_back is None:
        return exports_busy()
    content_type = exports.CSV_CONTENT_TYPE if kind == "csv" else exports.XLSX_CONTENT_TYPE
    response = StreamingHttpResponse(_export_body(asked, kind, give_back), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="time-{asked.first}_{asked.last}.{kind}"'
    return response
