"""
Weekly time sheets in the admin: each week ever submitted, its totals as
submitted, how it compares with the person's usual week, what changed since
its previous submission and its history. Nothing is edited here: a week is
approved or rejected (with a reason, asked on a page of its own) through the
domain, which alone decides who may decide which week and says why not.
*Waiting for my decision* is the list of the submitted weeks the staff member
may decide, longest waiting first, each with its totals.
"""

from datetime import date, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.db.models import Case, Exists, F, OuterRef, QuerySet, Value, When
from django.db.models.expressions import Combinable
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.dateformat import format as date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from timesheet.core import limits
from timesheet.core.dbtime import db_now
from timesheet.domain import timesheets
from timesheet.domain.errors import Refused
from timesheet.models import Team, TeamMembership, WeekSheet
from timesheet.templatetags.timesheet_time import instant
from timesheet.web.admin.common import USERNAME, label_of, list_instant, shown_instant
from timesheet.web.admin.fiches import listed

State = WeekSheet.State
MINE = "mine"
REJECT_TEMPLATE = "admin/timesheet/weeksheet/reject.html"
# How many projects a row of the queue names; the rest are counted.
PROJETS_NAMED = 3


def hours_minutes(seconds: float | None, *, signed: bool = False) -> str:
    """Seconds as H:MM (whole minutes, hours unbounded), with a sign if asked; None: "—"."""
    if seconds is None:
        return "—"
    minutes = int(abs(seconds)) // 60
    sign = "" if not minutes else ("-" if seconds < 0 else ("+" if signed else ""))
    return f"{sign}{minutes // 60}:{minutes % 60:02d}"


def person_name(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else "—"


def sheet_name(sheet: WeekSheet) -> str:
    """A week as a message names it: "Alice Martin 2026-W10"."""
    return f"{person_name(sheet.owner)} {sheet.week}"


def day_rows(sheet: WeekSheet) -> list[dict[str, Any]]:
    """Each day of the week's totals as submitted: its date, its weekday's names and its time."""
    rows = []
    for day, seconds in sorted((sheet.totals or {}).get("days", {}).items()):
        when = date.fromisoformat(day)
        rows.append(
            {
                "day": when,
                "short": date_format(when, "D"),
                "weekday": date_format(when, "l"),
                "seconds": seconds,
                "time": hours_minutes(seconds),
            }
        )
    return rows


def projet_rows(sheet: WeekSheet) -> list[dict[str, Any]]:
    """Each project of the week's totals as submitted, most time first."""
    projets = sorted((sheet.totals or {}).get("projets", {}).values(), key=lambda p: (-p["seconds"], p["name"]))
    return [{"name": projet["name"], "time": hours_minutes(projet["seconds"])} for projet in projets]


def compared(sheet: WeekSheet) -> dict[str, Any]:
    """The week's time against the person's usual week (the domain's mean of the weeks before that hold time)."""
    seconds = sheet.microseconds / timesheets.MICROSECONDS
    (usual,) = timesheets.usual_seconds([timesheets.week_of_sheet(sheet)])
    return {
        "time": hours_minutes(seconds),
        "usual": None if usual is None else hours_minutes(usual),
        "difference": None if usual is None else hours_minutes(seconds - usual, signed=True),
        "weeks": timesheets.USUAL_WEEKS,
    }


def changed(sheet: WeekSheet) -> list[dict[str, Any]]:
    """What differs from the previous submission, each line named, in H:MM."""
    lines = []
    for change in timesheets.changes(sheet.previous_totals, sheet.totals or {}):
        name = change["name"]
        if "day" in change:
            when = date.fromisoformat(change["day"])
            name = f"{date_format(when, 'D')} {change['day']}"
        lines.append(
            {
                "kind": "day" if "day" in change else "projet",
                "name": name,
                "before": hours_minutes(change["before"]),
                "after": hours_minutes(change["after"]),
                "difference": hours_minutes(change["after"] - change["before"], signed=True),
            }
        )
    return lines


def history_rows(sheet: WeekSheet) -> list[dict[str, Any]]:
    """The sheet's history, oldest first: when, the state it went to, by whom, and the reason if any."""
    entries = [entry for entry in (sheet.history or []) if isinstance(entry, dict)]
    ids = {entry["by"] for entry in entries if isinstance(entry.get("by"), int)}
    people = {user.pk: user for user in get_user_model().objects.filter(pk__in=ids)} if ids else {}
    rows = []
    for entry in entries:
        try:
            at = instant(datetime.fromisoformat(entry.get("at") or ""))
        except (TypeError, ValueError):
            at = str(entry.get("at") or "")
        state = entry.get("state", "")
        by = entry.get("by")
        rows.append(
            {
                "at": at,
                "state": state,
                "state_label": State(state).label if state in State.values else state,
                "by": person_name(people[by]) if by in people else (gettext("system") if by is None else f"#{by}"),
                "reason": entry.get("reason", ""),
            }
        )
    return rows


def state_badge(state: str) -> SafeString:
    label = State(state).label if state in State.values else state
    return format_html('<span class="etat week-state week-state-{}">{}</span>', state, label)


def waiting_count(user: Any) -> int:
    """How many submitted weeks ``user`` may decide."""
    return WeekSheet.objects.decidable_by(user).filter(state=State.SUBMITTED).count()


class DecisionFilter(admin.SimpleListFilter):
    """The queue: the submitted weeks the staff member may decide (the domain's ``decidable_by``)."""

    title = _("decision")
    parameter_name = "decision"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(MINE, _("Waiting for my decision"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == MINE:
            return queryset.decidable_by(request.user).filter(state=State.SUBMITTED)  # type: ignore[attr-defined]
        return queryset


class TeamFilter(admin.SimpleListFilter):
    """The weeks of a team's members: the teams of the people whose weeks the staff member sees."""

    title = _("team")
    parameter_name = "team"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        owners = WeekSheet.objects.visible_to(request.user).values("owner_id")
        teams = Team.objects.filter(Exists(TeamMembership.objects.filter(team=OuterRef("pk"), user_id__in=owners)))
        return [(str(pk), name) for pk, name in teams.order_by("name").values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = self.value()
        if not value:
            return queryset
        team_id = limits.parse_id(value)
        if team_id is None:
            return queryset.none()
        members = TeamMembership.objects.filter(team_id=team_id, user_id=OuterRef("owner_id"))
        return queryset.filter(Exists(members))


class RejectForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=timesheets.REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=_("Told to the person with the rejection: what to mend before submitting the week again."),
    )


# What a week's page says of it, above its totals.
SHEET_FIELDS = (
    "person",
    "week",
    "first_day_shown",
    "time_zone",
    "state_shown",
    "time",
    "submissions",
    "submitted",
    "decided_on",
    "decider",
    "reason",
)

# The rows waiting longest first, then every other week, the newest first.
WAITING_FIRST: list[str | Combinable] = [
    Case(When(state=State.SUBMITTED, then=Value(0)), default=Value(1)).asc(),
    Case(When(state=State.SUBMITTED, then=F("submitted_at"))).asc(nulls_last=True),
    F("starts_at").desc(),
    F("owner_id").asc(),
]


@admin.register(WeekSheet)
class WeekSheetAdmin(admin.ModelAdmin):
    # Under the week its first day, under the decision who took it: the list fits a laptop's screen.
    list_display = ["person", "week_shown", "state_shown", "time", "submitted", "decided", "waiting"]
    # The queue's: every row is submitted and undecided, and shows its totals and how it compares.
    queue_display = ["person", "week_shown", "time_compared", "week_totals", "waiting"]
    list_filter = [DecisionFilter, "state", TeamFilter]
    list_select_related = ["owner", "decided_by"]
    search_fields = [f"owner__{USERNAME}", "owner__first_name", "owner__last_name"]
    ordering = WAITING_FIRST
    actions = ["approve", "reject"]
    fieldsets = [
        (None, {"fields": SHEET_FIELDS}),
        (_("Totals as submitted"), {"fields": ["days_table", "projets_table"]}),
        (_("Compared"), {"fields": ["usual_week", "changes_table"]}),
        (_("History"), {"fields": ["history_table"]}),
    ]
    readonly_fields = [
        *SHEET_FIELDS,
        "days_table",
        "projets_table",
        "usual_week",
        "changes_table",
        "history_table",
    ]

    class Media:
        css = {"all": ["timesheet/admin.css"]}

    # Who sees what ---------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).visible_to(request.user)  # type: ignore[attr-defined]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return user.has_perm("timesheet.view_weeksheet") or user.has_perm("timesheet.approve_weeksheet")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the only writes are the decisions, through the domain

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        """
        The decisions are offered to those who decide someone's weeks (approvers,
        leads); the domain decides which weeks are theirs, and says why not.
        """
        return timesheets.decides_weeks(request.user)

    def in_queue(self, request: HttpRequest) -> bool:
        return request.GET.get(DecisionFilter.parameter_name) == MINE

    def get_list_display(self, request: HttpRequest) -> Any:
        return self.queue_display if self.in_queue(request) else self.list_display

    # Columns ----------------------------------------------------------------------------

    @admin.display(description=label_of(WeekSheet, "owner"), ordering=f"owner__{USERNAME}")
    def person(self, sheet: WeekSheet) -> str:
        return person_name(sheet.owner)

    @admin.display(description=label_of(WeekSheet, "week"), ordering="starts_at")
    def week_shown(self, sheet: WeekSheet) -> SafeString:
        """The week's name, and under it its first day."""
        return format_html(
            '<span class="nowrap">{}</span><span class="list-note nowrap">{}</span>',
            sheet.week,
            date_format(sheet.first_day, "D Y-m-d"),
        )

    @admin.display(description=label_of(WeekSheet, "first_day"), ordering="first_day")
    def first_day_shown(self, sheet: WeekSheet) -> str:
        return date_format(sheet.first_day, "l Y-m-d")

    @admin.display(description=label_of(WeekSheet, "state"), ordering="state")
    def state_shown(self, sheet: WeekSheet) -> SafeString:
        return state_badge(sheet.state)

    @admin.display(description=_("time"), ordering="microseconds")
    def time(self, sheet: WeekSheet) -> SafeString:
        return format_html(
            '<span class="nowrap">{}</span>', hours_minutes(sheet.microseconds / timesheets.MICROSECONDS)
        )

    @admin.display(description=label_of(WeekSheet, "submitted_at"), ordering="submitted_at")
    def submitted(self, sheet: WeekSheet) -> SafeString | None:
        return list_instant(sheet, "submitted_at")

    @admin.display(description=label_of(WeekSheet, "decided_at"), ordering="decided_at")
    def decided(self, sheet: WeekSheet) -> SafeString | None:
        """When the week was decided, and under it by whom."""
        shown = list_instant(sheet, "decided_at")
        if shown is None:
            return None
        by = gettext("by %(person)s") % {"person": person_name(sheet.decided_by)}
        return format_html('{}<span class="list-note">{}</span>', shown, by)

    @admin.display(description=label_of(WeekSheet, "decided_at"))
    def decided_on(self, sheet: WeekSheet) -> str:
        return shown_instant(sheet, "decided_at") or self.get_empty_value_display()

    @admin.display(description=label_of(WeekSheet, "decided_by"), ordering=f"decided_by__{USERNAME}")
    def decider(self, sheet: WeekSheet) -> str:
        return person_name(sheet.decided_by) if sheet.decided_by_id else self.get_empty_value_display()

    @admin.display(
        description=_("waiting for"),
        ordering=Case(When(state=State.SUBMITTED, then=F("submitted_at"))).desc(nulls_last=True),
    )
    def waiting(self, sheet: WeekSheet) -> str | None:
        if sheet.state != State.SUBMITTED or sheet.submitted_at is None:
            return None
        return timesince(sheet.submitted_at, now=db_now(), depth=2)

    @admin.display(description=_("time"), ordering="microseconds")
    def time_compared(self, sheet: WeekSheet) -> SafeString:
        """The week's time, and under it how it differs from the person's usual week."""
        shown = compared(sheet)
        if shown["usual"] is None:
            note = gettext("no usual week yet")
        else:
            difference = shown["difference"] if shown["difference"] != "0:00" else "±0:00"
            note = gettext("%(difference)s on the usual %(usual)s") % {
                "difference": difference,
                "usual": shown["usual"],
            }
        return format_html('<span class="nowrap">{}</span><span class="list-note">{}</span>', shown["time"], note)

    @admin.display(description=_("totals as submitted"))
    def week_totals(self, sheet: WeekSheet) -> SafeString:
        """Each day's time, then the projects', then what changed since the previous submission."""
        rows = day_rows(sheet)
        days_grid = format_html(
            '<table class="week-days"><tr>{}</tr><tr>{}</tr></table>',
            format_html_join("", '<th title="{}">{}</th>', ((row["day"].isoformat(), row["short"]) for row in rows)),
            format_html_join(
                "", '<td class="{}">{}</td>', (("" if row["seconds"] else "week-empty", row["time"]) for row in rows)
            ),
        )
        return format_html("{}{}{}", days_grid, self._projets_line(sheet), self._changes_note(sheet))

    def _projets_line(self, sheet: WeekSheet) -> SafeString:
        rows = projet_rows(sheet)
        named = format_html_join(
            " · ",
            '<span class="week-projet">{} <span class="nowrap">{}</span></span>',
            ((row["name"], row["time"]) for row in rows[:PROJETS_NAMED]),
        )
        rest = len(rows) - PROJETS_NAMED
        if rest > 0:
            more = ngettext("and %(count)d more", "and %(count)d more", rest) % {"count": rest}
            named = format_html("{} · {}", named, more)
        return format_html('<span class="week-projets">{}</span>', named or "—")

    def _changes_note(self, sheet: WeekSheet) -> SafeString | str:
        if not sheet.previous_totals:
            return ""
        lines = changed(sheet)
        if not lines:
            return format_html('<span class="list-note">{}</span>', gettext("submitted again, unchanged"))
        text = ngettext(
            "%(count)d change since the previous submission",
            "%(count)d changes since the previous submission",
            len(lines),
        ) % {"count": len(lines)}
        details = "; ".join(f"{line['name']} {line['difference']}" for line in lines)
        return format_html('<span class="list-note week-changed" title="{}">{}</span>', details, text)

    # The change page ----------------------------------------------------------------------

    @admin.display(description=_("each day"))
    def days_table(self, sheet: WeekSheet) -> SafeString:
        return render_to_string("admin/timesheet/weeksheet/_days.html", {"rows": day_rows(sheet), "sheet": sheet})

    @admin.display(description=_("each project"))
    def projets_table(self, sheet: WeekSheet) -> SafeString:
        return render_to_string("admin/timesheet/weeksheet/_projets.html", {"rows": projet_rows(sheet)})

    @admin.display(description=_("usual week"))
    def usual_week(self, sheet: WeekSheet) -> SafeString:
        return render_to_string("admin/timesheet/weeksheet/_usual.html", compared(sheet))

    @admin.display(description=_("since the previous submission"))
    def changes_table(self, sheet: WeekSheet) -> SafeString:
        context = {"first": not sheet.previous_totals, "rows": changed(sheet), "submissions": sheet.submissions}
        return render_to_string("admin/timesheet/weeksheet/_changes.html", context)

    @admin.display(description=label_of(WeekSheet, "history"))
    def history_table(self, sheet: WeekSheet) -> SafeString:
        return render_to_string("admin/timesheet/weeksheet/_history.html", {"rows": history_rows(sheet)})

    # Views ----------------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        context = {
            "waiting_count": waiting_count(request.user),
            "in_queue": self.in_queue(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        sheet = self.get_object(request, unquote(object_id))
        may_decide = (
            sheet is not None
            and sheet.state == State.SUBMITTED
            and self.has_decide_permission(request)
            and WeekSheet.objects.decidable_by(request.user).filter(pk=sheet.pk).exists()
        )
        context = {"may_decide": may_decide, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    # Actions ----------------------------------------------------------------------------------

    def _decide(self, request: HttpRequest, queryset: QuerySet, decide: Any, done_message: Any) -> None:
        """
        Apply ``decide`` to each selected week, longest waiting first; say once
        how many were decided, and each refusal's reason once, with the weeks it
        applies to. The others are decided all the same.
        """
        done, refused = 0, dict[str, list[str]]()
        for sheet in queryset.select_related("owner").order_by("submitted_at", "pk"):
            try:
                decide(sheet)
                done += 1
            except Refused as refusal:
                refused.setdefault(refusal.message, []).append(sheet_name(sheet))
        if done:
            self.message_user(request, done_message(done), messages.SUCCESS)
        elif not refused:  # the selection was none of the weeks this list holds
            self.message_user(request, gettext("None of the selected weeks is in this list."), messages.WARNING)
        for reason, names in refused.items():
            self.message_user(
                request, gettext("%(weeks)s: %(reason)s") % {"weeks": listed(names), "reason": reason}, messages.ERROR
            )

    @admin.action(description=_("Approve selected weeks"), permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(
            request,
            queryset,
            lambda sheet: timesheets.approve(actor=request.user, owner_id=sheet.owner_id, week=sheet.week),
            lambda n: ngettext("%(count)d week approved.", "%(count)d weeks approved.", n) % {"count": n},
        )

    @admin.action(description=_("Reject selected weeks"), permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Ask for the reason on a page of its own; once given, reject each selected week with it."""
        form = RejectForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_bound and form.is_valid():
            reason = form.cleaned_data["reason"]
            self._decide(
                request,
                queryset,
                lambda sheet: timesheets.reject(
                    actor=request.user, owner_id=sheet.owner_id, week=sheet.week, reason=reason
                ),
                lambda n: ngettext("%(count)d week rejected.", "%(count)d weeks rejected.", n) % {"count": n},
            )
            return None
        sheets = list(queryset.select_related("owner").order_by("submitted_at", "pk"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Reject weeks"),
            "sheets": [
                {
                    "sheet": sheet,
                    "name": person_name(sheet.owner),
                    "badge": state_badge(sheet.state),
                    "time": hours_minutes(sheet.microseconds / timesheets.MICROSECONDS),
                }
                for sheet in sheets
            ],
            "not_submitted": sum(sheet.state != State.SUBMITTED for sheet in sheets),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, REJECT_TEMPLATE, context)
