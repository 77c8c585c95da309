"""
The fiche admin's own pages: the time report, the CSV export of the list,
and a fiche's adjustment. Each takes the fiche admin, for its permissions,
its list's filters and the admin site's context.
"""

import csv
from datetime import timedelta

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from timesheet.core import limits
from timesheet.domain import days, exports, fiches, reports
from timesheet.domain.errors import Refused
from timesheet.models import Rounding
from timesheet.templatetags.timesheet_time import hms
from timesheet.web.admin.common import USERNAME
from timesheet.web.admin.forms import AdjustForm
from timesheet.web.http import exports_busy

# Rows the report page's table shows at most (its bars and totals count them all): a longer table is no
# page to read, and held whole it would grow with the report; the exports stream every row.
REPORT_PAGE_MAX_ROWS = 2000
# What a report's rounding applies to (REPORT_ROUNDING_SCOPE), in words.
ROUNDING_SCOPES = {"stretch": _("per stretch of running time"), "group": _("per day and project")}


def rounding_in_words(rounding: dict) -> dict:
    """A report's ``rounding`` as its page says it: the mode's and the scope's labels; no step when off."""
    mode = rounding["mode"]
    return {
        "off": mode == Rounding.NONE,
        "mode": Rounding(mode).label if mode in Rounding.values else mode,
        "step": rounding["step_minutes"],
        "scope": ROUNDING_SCOPES.get(rounding["scope"], rounding["scope"]),
    }


def report_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    """Time per period, owner, client and project, billable time and amounts, with a bar per period, and its exports."""
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied
    # The last seven days of the staff member's own zone, on the database's clock.
    today = days.today_for(int(request.user.pk or 0))
    first = today - timedelta(days=6)
    data = {"from": first.isoformat(), "to": today.isoformat(), **request.GET.dict()}
    error, report, bars = "", None, []
    try:
        asked = reports.request_from_query(user=request.user, query=request.GET, first=first, last=today)
    except Refused as refused:
        error = refused.message
    else:
        # Streamed: the bars and the totals count every row, the table holds at most REPORT_PAGE_MAX_ROWS.
        fields, rows = reports.report_stream(asked)
        shown: list[dict] = []
        totals: dict = {}
        per_period: dict[str, float] = {}
        count = 0
        try:
            for row in rows:
                if "totals" in row:
                    totals = row["totals"]
                    continue
                per_period[row["period"]] = per_period.get(row["period"], 0) + row["seconds"]
                count += 1
                if count <= REPORT_PAGE_MAX_ROWS:
                    shown.append(row)
        finally:
            rows.close()
        report = {"rows": shown, "totals": totals, **fields}
        if count > REPORT_PAGE_MAX_ROWS:
            messages.warning(
                request,
                gettext("The table shows the first %(shown)s rows of %(rows)s; the CSV and XLSX exports hold them all.")
                % {
                    "shown": number_format(REPORT_PAGE_MAX_ROWS, force_grouping=True),
                    "rows": number_format(count, force_grouping=True),
                },
            )
        longest = max(per_period.values(), default=0) or 1
        bars = [
            {"period": period, "seconds": seconds, "percent": round(100 * seconds / longest, 1)}
            for period, seconds in sorted(per_period.items())
        ]
    # The table's columns: the period and the dimensions (labels), then time, rounded, billable and amount.
    labels = 1 + len(report["by"]) if report else 1
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": gettext("Time report"),
        "labels": labels,
        "columns": labels + 4,
        "report": report,
        "rounding": rounding_in_words(report["rounding"]) if report else None,
        "bars": bars,
        "error": error,
        "query": data,
        "owners": get_user_model().objects.filter(fiches__isnull=False).distinct().order_by(USERNAME),
        "querystring": request.GET.urlencode(),
    }
    return TemplateResponse(request, "admin/timesheet/fichetemps/report.html", context)


def export_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """
    The fiches the list shows with its current filters and search, as CSV,
    streamed as it is read (a csv writer over a pseudo-buffer, as Django's
    docs show; the chunks made off the event loop, on the request's thread);
    past EXPORT_MAX_CONCURRENT exports at once, a 429.
    """
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied
    try:
        shown = model_admin.get_changelist_instance(request).get_queryset(request)
    except (IncorrectLookupParameters, ValidationError, ValueError):
        return HttpResponseBadRequest(gettext("These filters are not valid."), content_type="text/plain")

    class Echo:
        """A pseudo-buffer: ``write`` returns the line rather than keeping it."""

        def write(self, value: str) -> str:
            return value

    def chunks():
        """The CSV in UTF-8 chunks of CHUNK_ROWS lines, the fiches read 2000 at a time."""
        writer = csv.writer(Echo())
        lines = [
            writer.writerow(
                [
                    "id",
                    "projet",
                    "owner",
                    "libelle",
                    "etat",
                    "temps_impute_seconds",
                    "temps_live_seconds",
                    "temps_live",
                    "en_calcul_depuis",
                    "auto_stopped",
                    "created_at",
                ]
            )
        ]
        for fiche in shown.iterator(chunk_size=2000):
            lines.append(
                writer.writerow(
                    [
                        fiche.pk,
                        exports.safe(fiche.projet.designation),
                        exports.safe(fiche.owner.get_username()),
                        exports.safe(fiche.libelle),
                        fiche.etat,
                        f"{fiche.temps_impute.total_seconds():.3f}",
                        f"{fiche.temps_live.total_seconds():.3f}",
                        hms(fiche.temps_live),
                        fiche.en_calcul_depuis.isoformat() if fiche.en_calcul_depuis else "",
                        fiche.auto_stopped,
                        fiche.created_at.isoformat(),
                    ]
                )
            )
            if len(lines) >= exports.CHUNK_ROWS:
                yield "".join(lines).encode()
                lines = []
        if lines:
            yield "".join(lines).encode()

    give_back = exports.slots.take()
    if give_back is None:
        return exports_busy()
    response = StreamingHttpResponse(exports.Streamed(chunks(), give_back), content_type=exports.CSV_CONTENT_TYPE)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="fiches-{stamp}.csv"'
    return response


def adjust_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    fiche_id = limits.parse_id(str(object_id))
    if fiche_id is None:
        raise Http404(gettext("No such fiche."))
    fiche = get_object_or_404(model_admin.get_queryset(request), pk=fiche_id)
    if not model_admin.has_change_permission(request, fiche):
        raise PermissionDenied
    form = AdjustForm(request.POST or None, owner_id=fiche.owner_id)
    if request.method == "POST" and form.is_valid():
        try:
            fiches.adjust_fiche(
                fiche_id=fiche.pk,
                actor=request.user,
                delta=form.cleaned_data["delta"],
                reason=form.cleaned_data["reason"],
                day=form.cleaned_data["day"],
            )
        except Refused as refused:
            form.add_error(None, refused.message)
        else:
            model_admin.message_user(request, gettext("The fiche's time was adjusted."))
            return redirect(reverse("admin:timesheet_fichetemps_change", args=[fiche.pk]))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "fiche": fiche,
        "form": form,
        "stored": hms(fiche.temps_live),
        "title": gettext("Adjust the time of %(fiche)s") % {"fiche": fiche},
    }
    return TemplateResponse(request, "admin/timesheet/fichetemps/adjust.html", context)
