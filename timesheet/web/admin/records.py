"""The records the product writes, for staff to look at: the audit trail, tickers' heartbeats, webhook deliveries."""

from django.contrib import admin
from django.db.models.functions import Now
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from timesheet.domain.health import is_fresh
from timesheet.models import FicheEvent, TickerHeartbeat, WebhookDelivery
from timesheet.templatetags.timesheet_time import hms_ms, instant
from timesheet.web.admin.common import ReadOnlyAdmin, label_of, list_instant

# How much of a long text (a reason, an error) a list shows; the whole is on the record's page.
LIST_TEXT_CHARS = 60


def shortened(text: str):
    """``text`` cut to LIST_TEXT_CHARS characters for a list, the whole of it in its title; None when empty."""
    if not text:
        return None
    short = Truncator(text).chars(LIST_TEXT_CHARS)
    return format_html('<span title="{}">{}</span>', text, short) if short != text else text


class ListStyles:
    css = {"all": ["timesheet/admin.css"]}


@admin.register(FicheEvent)
class FicheEventAdmin(ReadOnlyAdmin):
    list_display = ["when", "fiche", "kind", "actor", "delta_ms", "after_ms", "short_reason"]
    list_filter = ["kind", ("actor", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["fiche", "actor"]
    search_fields = ["fiche__libelle", "reason"]
    date_hierarchy = "at"
    Media = ListStyles

    @admin.display(description=label_of(FicheEvent, "at"), ordering="at")
    def when(self, event):
        return list_instant(event, "at")

    @admin.display(description=label_of(FicheEvent, "delta"), ordering="delta")
    def delta_ms(self, event):
        return hms_ms(event.delta)

    @admin.display(description=label_of(FicheEvent, "temps_impute"), ordering="temps_impute")
    def after_ms(self, event):
        return hms_ms(event.temps_impute)

    @admin.display(description=label_of(FicheEvent, "reason"))
    def short_reason(self, event):
        return shortened(event.reason)


@admin.register(TickerHeartbeat)
class TickerHeartbeatAdmin(ReadOnlyAdmin):
    # Compact: instants as YYYY-MM-DD HH:MM, the stop said under the status, the last error cut short.
    list_display = [
        "__str__",
        "status",
        "started",
        "last_tick",
        "ticks",
        "last_rows",
        "duration_ms",
        "failures",
        "error",
    ]
    list_filter = ["host"]
    Media = ListStyles

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(db_now=Now())

    @admin.display(description=_("status"))
    def status(self, heartbeat):
        if heartbeat.stopped_at:
            return format_html(
                '<span class="heartbeat-stopped">{}</span><span class="list-note">{}</span>',
                gettext("stopped"),
                instant(heartbeat.stopped_at),
            )
        if is_fresh(heartbeat.last_tick_at, heartbeat.interval, heartbeat.db_now):
            return format_html('<span class="heartbeat-alive">{}</span>', gettext("alive"))
        return format_html('<span class="heartbeat-stale">{}</span>', gettext("silent"))

    @admin.display(description=label_of(TickerHeartbeat, "started_at"), ordering="started_at")
    def started(self, heartbeat):
        return list_instant(heartbeat, "started_at")

    @admin.display(description=label_of(TickerHeartbeat, "last_tick_at"), ordering="last_tick_at")
    def last_tick(self, heartbeat):
        return list_instant(heartbeat, "last_tick_at")

    @admin.display(description=label_of(TickerHeartbeat, "last_duration"), ordering="last_duration")
    def duration_ms(self, heartbeat):
        if heartbeat.last_duration is None:
            return None
        return f"{heartbeat.last_duration.total_seconds() * 1000:.1f} ms"

    @admin.display(description=label_of(TickerHeartbeat, "last_error"))
    def error(self, heartbeat):
        return shortened(heartbeat.last_error)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["when", "subscription", "event", "attempt", "ok", "status_code", "took", "short_error"]
    list_filter = ["ok", "subscription"]
    list_select_related = ["subscription"]
    Media = ListStyles

    @admin.display(description=label_of(WebhookDelivery, "at"), ordering="at")
    def when(self, delivery):
        return list_instant(delivery, "at")

    @admin.display(description=label_of(WebhookDelivery, "duration"), ordering="duration")
    def took(self, delivery):
        return hms_ms(delivery.duration) or None

    @admin.display(description=label_of(WebhookDelivery, "error"))
    def short_error(self, delivery):
        return shortened(delivery.error)
