import csv
import zoneinfo
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce, Now
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from timesheet.domain import exports, fiches, tokens, webhooks
from timesheet.domain.health import is_fresh, ticker_status
from timesheet.models import (
    ApiToken,
    FicheEvent,
    FicheTemps,
    LockedPeriod,
    Profile,
    Projet,
    TickerHeartbeat,
    WebhookDelivery,
    WebhookSubscription,
    sees_everyones_fiches,
)
from timesheet.templatetags.timesheet_time import hms


def live_span(seconds: float, rate: int, text: str):
    return format_html(
        '<span class="live-time" data-live-seconds="{}" data-live-rate="{}">{}</span>', seconds, rate, text
    )


@admin.register(Projet)
class ProjetAdmin(admin.ModelAdmin):
    list_display = ["designation", "actif", "total_time", "fiches_running", "created_at"]
    list_filter = ["actif"]
    search_fields = ["designation"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                total=Sum("fiches__temps_impute"),
                running=Coalesce(
                    Subquery(
                        FicheTemps.objects.running()
                        .filter(projet=OuterRef("pk"))
                        .order_by()
                        .values("projet")
                        .annotate(count=Count("pk"))
                        .values("count")
                    ),
                    0,
                ),
            )
        )

    @admin.display(description=_("total time charged"), ordering="total")
    def total_time(self, projet):
        return hms(projet.total)

    @admin.display(description=_("running fiches"), ordering="running")
    def fiches_running(self, projet):
        return projet.running


class FicheEventInline(admin.TabularInline):
    model = FicheEvent
    fields = ["at", "kind", "actor", "delta_hms", "temps_hms", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = _("history")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("delta"))
    def delta_hms(self, event):
        sign = "-" if event.delta < timedelta(0) else ""
        return sign + hms(abs(event.delta))

    @admin.display(description=_("time charged after"))
    def temps_hms(self, event):
        return hms(event.temps_impute)


class AdjustForm(forms.Form):
    delta = forms.DurationField(
        label=_("Duration"),
        help_text=_("H:MM:SS to add, e.g. 0:30:00; -0:30:00 removes half an hour."),
    )
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=1000)
    day = forms.DateField(
        label=_("Day"), required=False, help_text=_("The owner's local day it counts on (YYYY-MM-DD); empty for today.")
    )

    def clean_delta(self):
        delta = self.cleaned_data["delta"]
        if not delta:
            raise forms.ValidationError(_("The adjustment must not be zero."))
        return delta


class FicheTempsForm(forms.ModelForm):
    class Meta:
        model = FicheTemps
        fields = ["projet", "owner", "libelle"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "projet" in self.fields:
            # A new project must be active; the fiche's own stays valid if it was deactivated since.
            self.fields["projet"].queryset = Projet.objects.filter(Q(actif=True) | Q(pk=self.instance.projet_id))


@admin.register(FicheTemps)
class FicheTempsAdmin(admin.ModelAdmin):
    form = FicheTempsForm
    list_display = [
        "libelle_or_id",
        "projet",
        "owner",
        "etat_badge",
        "stored_time",
        "live_time",
        "en_calcul_depuis",
        "auto_stopped",
    ]
    list_display_links = ["libelle_or_id"]
    list_filter = ["etat", "projet", ("owner", admin.RelatedOnlyFieldListFilter), "auto_stopped"]
    list_select_related = ["projet", "owner"]
    search_fields = ["libelle", "projet__designation", "owner__username"]
    date_hierarchy = "created_at"
    actions = ["start", "pause", "finish"]
    readonly_fields = [
        "etat_badge",
        "stored_time",
        "live_time",
        "en_calcul_depuis",
        "compte_jusqua",
        "auto_stopped",
        "created_at",
        "updated_at",
    ]
    inlines = [FicheEventInline]

    class Media:
        css = {"all": ["timesheet/admin.css"]}
        js = ["timesheet/live_time.js"]

    def get_queryset(self, request):
        return super().get_queryset(request).with_live_time()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["projet", "owner", "libelle"]
        return ["projet", "owner", "libelle", *self.readonly_fields]

    def get_changeform_initial_data(self, request):
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change):
        if not change:
            created = fiches.create_fiche(
                projet_id=obj.projet_id, owner_id=obj.owner.pk, actor=request.user, libelle=obj.libelle
            )
            obj.pk = created.pk
            return
        # Through the service, which audits the change; a save() would also write back a stale temps_impute.
        edited = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            fiches.update_fiche(
                fiche_id=obj.pk,
                actor=request.user,
                libelle=edited.get("libelle"),
                projet_id=edited["projet"].pk if "projet" in edited else None,
                owner=edited.get("owner"),
            )
        except fiches.TransitionRefused as refused:
            self.message_user(request, refused.message, messages.ERROR)

    @admin.display(description=_("label"), ordering="libelle")
    def libelle_or_id(self, fiche):
        return fiche.libelle or f"#{fiche.pk}"

    @admin.display(description=_("state"), ordering="etat")
    def etat_badge(self, fiche):
        return format_html('<span class="etat etat-{}">{}</span>', fiche.etat, fiche.get_etat_display())

    @admin.display(description=_("time charged"), ordering="temps_impute")
    def stored_time(self, fiche):
        return hms(fiche.temps_impute)

    @admin.display(description=_("live time"), ordering="temps_live")
    def live_time(self, fiche):
        live = getattr(fiche, "temps_live", fiche.temps_impute)
        return live_span(live.total_seconds(), int(fiche.is_running), hms(live))

    def _transition(self, request, queryset, service, done_message):
        """Apply ``service`` to each selected fiche; report how many it changed and every refusal."""
        done, refusals = 0, []
        for fiche_id in queryset.values_list("pk", flat=True):
            try:
                service(fiche_id=fiche_id, actor=request.user)
                done += 1
            except fiches.TransitionRefused as refused:
                refusals.append(refused.message)
        if done:
            self.message_user(request, done_message(done))
        for message in refusals:
            self.message_user(request, message, messages.WARNING)

    @admin.action(description=_("Start the selected fiches"), permissions=["change"])
    def start(self, request, queryset):
        self._transition(
            request,
            queryset,
            fiches.start_fiche,
            lambda n: ngettext("%(count)d fiche started.", "%(count)d fiches started.", n) % {"count": n},
        )

    @admin.action(description=_("Pause the selected fiches"), permissions=["change"])
    def pause(self, request, queryset):
        self._transition(
            request,
            queryset,
            fiches.pause_fiche,
            lambda n: ngettext("%(count)d fiche paused.", "%(count)d fiches paused.", n) % {"count": n},
        )

    @admin.action(description=_("Finish the selected fiches"), permissions=["change"])
    def finish(self, request, queryset):
        self._transition(
            request,
            queryset,
            fiches.finish_fiche,
            lambda n: ngettext("%(count)d fiche finished.", "%(count)d fiches finished.", n) % {"count": n},
        )

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            fiches = changelist.queryset.order_by()
            totals = {
                **fiches.aggregate(live=Sum("temps_live"), count=Count("pk")),
                "running": fiches.running().count(),
            }
            live = totals["live"] or timedelta(0)
            response.context_data["totals"] = {
                "count": totals["count"],
                "running": totals["running"],
                "seconds": live.total_seconds(),
                "display": hms(live),
            }
            if not ticker_status()["healthy"]:
                response.context_data["ticker_warning"] = gettext(
                    "No ticker is alive: running fiches' stored time is not being refreshed "
                    "(their live time stays exact). Start it with: python manage.py run_fiches_ticker"
                )
        return response

    def get_urls(self):
        return [
            path("export/", self.admin_site.admin_view(self.export_view), name="timesheet_fichetemps_export"),
            path("report/", self.admin_site.admin_view(self.report_view), name="timesheet_fichetemps_report"),
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="timesheet_fichetemps_adjust",
            ),
            *super().get_urls(),
        ]

    def report_view(self, request):
        """Time per period, owner and project, with a bar per period, and its exports."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        from timesheet.web.api import ReportFilters, report_for

        today = timezone.localdate()
        data = {"from": (today - timedelta(days=6)).isoformat(), "to": today.isoformat(), **request.GET.dict()}
        error, report, bars = "", None, []
        try:
            report = report_for(request.user, ReportFilters(**data))
        except (ValueError, fiches.TransitionRefused) as exc:  # pydantic's ValidationError is a ValueError
            error = getattr(exc, "message", None) or gettext("Check the dates (YYYY-MM-DD) and the grouping.")
        if report:
            per_period = {}
            for row in report["rows"]:
                per_period[row["period"]] = per_period.get(row["period"], 0) + row["seconds"]
            longest = max(per_period.values(), default=0) or 1
            bars = [
                {"period": period, "seconds": seconds, "percent": round(100 * seconds / longest, 1)}
                for period, seconds in sorted(per_period.items())
            ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Time report"),
            "report": report,
            "bars": bars,
            "error": error,
            "query": data,
            "owners": get_user_model().objects.filter(fiches__isnull=False).distinct().order_by("username"),
            "querystring": request.GET.urlencode(),
        }
        return TemplateResponse(request, "admin/timesheet/fichetemps/report.html", context)

    def export_view(self, request):
        """The fiches the list shows with its current filters and search, as CSV."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        try:
            fiches = self.get_changelist_instance(request).get_queryset(request)
        except (IncorrectLookupParameters, ValidationError, ValueError):
            return HttpResponseBadRequest(gettext("These filters are not valid."), content_type="text/plain")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="fiches-{stamp}.csv"'
        writer = csv.writer(response)
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
        for fiche in fiches.iterator(chunk_size=2000):
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
        return response

    def adjust_view(self, request, object_id):
        if not str(object_id).isdigit():
            raise Http404(gettext("No such fiche."))
        fiche = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, fiche):
            raise PermissionDenied
        form = AdjustForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                fiches.adjust_fiche(
                    fiche_id=fiche.pk,
                    actor=request.user,
                    delta=form.cleaned_data["delta"],
                    reason=form.cleaned_data["reason"],
                    day=form.cleaned_data["day"],
                )
            except fiches.TransitionRefused as refused:
                form.add_error(None, refused.message)
            else:
                self.message_user(request, gettext("The fiche's time was adjusted."))
                return redirect(reverse("admin:timesheet_fichetemps_change", args=[fiche.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "fiche": fiche,
            "form": form,
            "stored": hms(fiche.temps_live),
            "title": gettext("Adjust the time of %(fiche)s") % {"fiche": fiche},
        }
        return TemplateResponse(request, "admin/timesheet/fichetemps/adjust.html", context)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the product alone: staff look, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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


class ApiTokenForm(forms.ModelForm):
    lifetime_days = forms.IntegerField(
        label=_("Valid for (days)"), min_value=1, max_value=tokens.MAX_LIFETIME.days, initial=90
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name", "scope"]

    def clean_user(self):
        user = self.cleaned_data["user"]
        # A token acts as its user: only a superuser makes one for someone else.
        if user != self.actor and not self.actor.is_superuser:
            raise forms.ValidationError(_("Only a superuser makes a token for someone else."))
        return user


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ["name", "user", "prefix", "scope", "created_at", "expires_at", "last_used_at", "status"]
    list_filter = ["scope", ("user", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return False  # a token is made or revoked, never edited

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.actor = request.user
        return form

    def get_changeform_initial_data(self, request):
        return {"user": request.user.pk, **super().get_changeform_initial_data(request)}

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "scope", "lifetime_days"]
        return ["user", "name", "prefix", "scope", "created_at", "expires_at", "last_used_at", "revoked_at"]

    def save_model(self, request, obj, form, change):
        token, raw = tokens.create_token(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            lifetime=timedelta(days=form.cleaned_data["lifetime_days"]),
        )
        obj.pk = token.pk
        self.message_user(
            request,
            format_html("{} <code>{}</code>", gettext("The token, shown this once (copy it now):"), raw),
            messages.WARNING,
        )

    @admin.display(description=_("status"))
    def status(self, token):
        if token.revoked_at:
            return gettext("revoked")
        return gettext("expired") if token.expires_at <= timezone.now() else gettext("valid")

    @admin.action(description=_("Revoke the selected tokens"), permissions=["delete"])
    def revoke(self, request, queryset):
        for token_id in queryset.values_list("pk", flat=True):
            tokens.revoke_token(token_id=token_id, actor=request.user)
        self.message_user(request, gettext("Revoked."))


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ["at", "event", "attempt", "ok", "status_code", "duration", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    verbose_name_plural = _("latest deliveries")

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-id")


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "owner", "active", "cursor", "attempts", "failing_since", "next_attempt_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    readonly_fields = ["cursor", "attempts", "failing_since", "next_attempt_at", "disabled_reason", "created_at"]
    inlines = [WebhookDeliveryInline]
    actions = ["enable"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        actor = request.user

        class SubscriptionForm(form):
            def clean(self):
                cleaned = super().clean()
                owner = cleaned.get("owner")
                # A subscription sends its fiches' events out: only what the actor may see.
                if (owner is None or owner != actor) and not sees_everyones_fiches(actor):
                    raise forms.ValidationError(
                        gettext("Subscribing to other people's events needs the permission to view fiches.")
                    )
                return cleaned

        return SubscriptionForm

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
            return
        created = webhooks.create_subscription(
            name=obj.name, url=obj.url, secret=obj.secret, kinds=obj.kinds, owner_id=obj.owner_id
        )
        obj.pk = created.pk

    @admin.action(description=_("Enable again, from where delivery stopped"), permissions=["change"])
    def enable(self, request, queryset):
        queryset.update(active=True, attempts=0, failing_since=None, disabled_reason="", next_attempt_at=Now())
        self.message_user(request, gettext("Enabled."))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["at", "subscription", "event", "attempt", "ok", "status_code", "duration", "error"]
    list_filter = ["ok", "subscription"]
    list_select_related = ["subscription"]


@admin.register(LockedPeriod)
class LockedPeriodAdmin(admin.ModelAdmin):
    list_display = ["until", "owner", "reason", "created_by", "created_at"]
    list_filter = [("owner", admin.RelatedOnlyFieldListFilter)]
    fields = ["until", "owner", "reason"]

    def has_change_permission(self, request, obj=None):
        return False  # a lock is made (or removed by whoever may delete it), never moved

    def save_model(self, request, obj, form, change):
        locked = fiches.lock_days(until=obj.until, owner_id=obj.owner_id, actor=request.user, reason=obj.reason)
        obj.pk = locked.pk

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        actor = request.user

        class LockForm(form):
            def clean(self):
                cleaned = super().clean()
                until = cleaned.get("until")
                if until is not None:
                    owner = cleaned.get("owner")
                    try:  # the service's own rule, shown on the form
                        fiches.check_lockable(until=until, owner_id=owner.pk if owner else None, actor=actor)
                    except fiches.TransitionRefused as refused:
                        raise forms.ValidationError(refused.message) from None
                return cleaned

        return LockForm


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "time_zone"]
    search_fields = ["user__username", "time_zone"]

    def save_model(self, request, obj, form, change):
        try:
            fiches.set_time_zone(user=obj.user, name=obj.time_zone, actor=request.user)
        except fiches.TransitionRefused as refused:
            self.message_user(request, refused.message, messages.ERROR)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        class ZoneForm(form):
            def clean_time_zone(self):
                name = self.cleaned_data["time_zone"]
                if name not in zoneinfo.available_timezones():
                    raise forms.ValidationError(gettext("Not a time zone: use an IANA name such as Europe/Paris."))
                return name

        return ZoneForm
