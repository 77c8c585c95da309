"""The records the product writes, for staff to look at: the audit trail, tickers' heartbeats, webhook deliveries."""

from django.contrib import admin
from django.db.models.functions import Now
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from timesheet.domain.health import is_fresh
from timesheet.models import FicheEvent, TickerHeartbeat, WebhookDelivery
from timesheet.web.admin.common import ReadOnlyAdmin


@admin.register(FicheEvent)
class FicheEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "fiche", "kind", "actor", "delta", "temps_impute", "reason"]
    list_filter = ["kind", ("actor", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["fiche", "actor"]
    search_fields = ["fiche__libelle", "reason"]
    date_hierarchy = "at"


@admin.register(TickerHeartbeat)
class TickerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "status",
        "started_at",
        "last_tick_at",
        "ticks",
        "last_rows",
        "last_duration",
        "failures",
        "last_error",
        "stopped_at",
    ]
    list_filter = ["host"]

    class Media:
        css = {"all": ["timesheet/admin.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(db_now=Now())

    @admin.display(description=_("status"))
    def status(self, heartbeat):
        if heartbeat.stopped_at:
            return format_html('<span class="heartbeat-stopped">{}</span>', gettext("stopped"))
        if is_fresh(heartbeat.last_tick_at, heartbeat.interval, heartbeat.db_now):
            return format_html('<span class="heartbeat-alive">{}</span>', gettext("alive"))
        return format_html('<span class="heartbeat-stale">{}</span>', gettext("silent"))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["at", "subscription", "event", "attempt", "ok", "status_code", "duration", "error"]
    list_filter = ["ok", "subscription"]
    list_select_related = ["subscription"]
