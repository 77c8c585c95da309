"""
Budgets in the admin: set through the budgets' service, shown live (used,
left, percent, the forecast instant of exhaustion, each threshold's crossing),
each row's usage drawn again every few seconds through htmx.
"""

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from timesheet.core.dbtime import db_now
from timesheet.domain import budgets, rates
from timesheet.domain.errors import Code, Refused
from timesheet.models import Budget, BudgetCrossing
from timesheet.templatetags.timesheet_time import hms
from timesheet.web.admin.common import ReadOnlyAdmin

LIVE_TEMPLATE = "admin/timesheet/budget/_live.html"


def parse_hours(text: str) -> int:
    """Hours as staff type them ("40", "12.5", "7:30") in whole seconds; refused otherwise."""
    text = text.strip()
    try:
        if ":" in text:
            hours, minutes = text.split(":", 1)
            digits = hours.isascii() and hours.isdigit() and minutes.isascii() and minutes.isdigit()
            if not (digits and len(minutes) == 2 and int(minutes) < 60):
                raise ValueError(text)
            seconds = int(hours) * 3600 + int(minutes) * 60
        else:
            if not text.isascii():
                raise ValueError(text)
            amount = Decimal(text)
            if not amount.is_finite() or amount > 10**9:
                raise ValueError(text)
            seconds = int(amount * 3600)
            if amount * 3600 != seconds:
                raise ValueError(text)
    except (ValueError, ArithmeticError):
        raise Refused(_("Type hours as 40, 12.5 or 7:30."), code=Code.INVALID) from None
    if seconds < 1:
        raise Refused(_("A budget's limit is a positive amount."), code=Code.INVALID)
    return seconds


class BudgetForm(forms.ModelForm):
    limit_text = forms.CharField(
        label=gettext_lazy("limit"),
        max_length=30,
        help_text=gettext_lazy("Hours for a time budget (40, 12.5, 7:30); an amount for a money budget (1500.00)."),
    )
    thresholds_text = forms.CharField(
        label=gettext_lazy("thresholds (percent)"),
        max_length=60,
        initial="80, 100",
        help_text=gettext_lazy("Each alerts once per period, such as 50, 80, 100."),
    )

    class Meta:
        model = Budget
        fields = ["projet", "client", "kind", "period", "action"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        budget = self.instance
        if budget.pk:
            self.initial["limit_text"] = (
                rates.money(budget.limit) if budget.kind == Budget.Kind.MONEY else _hours_text(budget.limit)
            )
            self.initial["thresholds_text"] = ", ".join(str(percent) for percent in budget.thresholds or [])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        raw = cleaned.get("limit_text")
        try:
            if raw is not None:
                kind = cleaned.get("kind")
                cleaned["limit"] = rates.parse_money(raw, name=_("limit")) if kind == "money" else parse_hours(raw)
                budgets.check_limit(str(kind), cleaned["limit"])  # the service's own bound, shown on the form
        except Refused as refused:
            self.add_error("limit_text", refused.message)
        try:
            if cleaned.get("thresholds_text") is not None:
                cleaned["thresholds"] = budgets.clean_thresholds(cleaned["thresholds_text"])
        except Refused as refused:
            self.add_error("thresholds_text", refused.message)
        if (cleaned.get("projet") is None) == (cleaned.get("client") is None):
            raise forms.ValidationError(_("A budget is of one project or one client."))
        return cleaned


def _hours_text(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}" if rest else str(hours)


class CrossingInline(admin.TabularInline):
    model = BudgetCrossing
    extra = 0
    can_delete = False
    fields = ("period_key", "percent", "crossed_at", "rearmed")
    readonly_fields = ("period_key", "percent", "crossed_at", "rearmed")
    ordering = ["-period_key", "percent"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    form = BudgetForm
    list_display = ["subject", "kind", "period", "limit_shown", "usage", "action"]
    list_filter = ["kind", "period", "action"]
    search_fields = ["projet__designation", "client__name"]
    fields = ["projet", "client", "kind", "period", "limit_text", "thresholds_text", "action", "usage"]
    readonly_fields = ["usage"]
    inlines = [CrossingInline]

    class Media:
        js = ["django_htmx/htmx-2.min.js"]
        css = {"all": ["timesheet/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("projet", "client").prefetch_related("crossings")

    @admin.display(description=gettext_lazy("of"), ordering="projet__designation")
    def subject(self, budget: Budget) -> str:
        return budgets.subject_name(budget)

    @admin.display(description=gettext_lazy("limit"), ordering="limit")
    def limit_shown(self, budget: Budget) -> str:
        if budget.kind == Budget.Kind.MONEY:
            return f"{rates.money(budget.limit)} {rates.currency()}"
        return _hours_text(budget.limit) + " h"

    @admin.display(description=gettext_lazy("used, live"))
    def usage(self, budget: Budget) -> Any:
        if not budget.pk:
            return "—"
        return render_to_string(LIVE_TEMPLATE, live_context(budget))

    def get_urls(self) -> list[Any]:
        live = self.admin_site.admin_view(self.live_view)
        return [path("<int:budget_id>/live/", live, name="timesheet_budget_live"), *super().get_urls()]

    def live_view(self, request: HttpRequest, budget_id: int) -> HttpResponse:
        """One budget's live usage, the partial each row draws again every few seconds."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        budget = self.get_queryset(request).filter(pk=budget_id).first()
        if budget is None:
            raise Http404
        return render(request, LIVE_TEMPLATE, live_context(budget))

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        cleaned = form.cleaned_data
        try:
            saved = budgets.save_budget(
                projet_id=obj.projet_id,
                client_id=obj.client_id,
                kind=obj.kind,
                period=obj.period,
                limit=cleaned["limit"],
                thresholds=cleaned["thresholds"],
                action=obj.action,
                budget_id=obj.pk if change else None,
            )
        except Refused as refused:  # a budget of that project made meanwhile: said, nothing saved
            self.message_user(request, refused.message, level="error")
            return
        obj.pk = saved.pk

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return super().log_addition(request, obj, message) if obj.pk else None

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return super().log_change(request, obj, message) if obj.pk else None

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: str | None = None) -> HttpResponse:
        if obj.pk is None:  # refused by the service: the refusal was said, back to the list
            return HttpResponseRedirect(reverse("admin:timesheet_budget_changelist"))
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        if obj.pk is None:
            return HttpResponseRedirect(reverse("admin:timesheet_budget_changelist"))
        return super().response_change(request, obj)


def live_context(budget: Budget) -> dict[str, Any]:
    """What the live partial shows: the budget's live values, and whether it passed a threshold."""
    shown = budgets.live(budget, now=db_now(), crossings=budget.crossings.all())
    crossed = [threshold for threshold in shown["thresholds"] if threshold["crossed_at"]]
    if budget.kind == Budget.Kind.MONEY:
        used, left = f"{shown['used']} {shown['currency']}", f"{shown['left']} {shown['currency']}"
    else:
        # Both whole seconds of one reading: what is shown used and left adds up to the limit.
        used_seconds = min(int(shown["used"]), budget.limit)
        used, left = hms(timedelta(seconds=used_seconds)), hms(timedelta(seconds=budget.limit - used_seconds))
    return {
        "budget": budget,
        "live": shown,
        "used": used,
        "left": left,
        "bar": min(100.0, shown["percent"]),
        "crossed": crossed,
        "level": "over" if shown["percent"] >= 100 else ("warn" if crossed else "ok"),
    }


@admin.register(BudgetCrossing)
class BudgetCrossingAdmin(ReadOnlyAdmin):
    list_display = ["budget", "period_key", "percent", "crossed_at", "rearmed"]
    list_filter = ["percent"]
