"""The admin of fiches: lists with live time and totals, actions and edits through the services."""

from datetime import timedelta
from functools import partial
from typing import cast

from django.contrib import admin, messages
from django.db.models import Count, Sum
from django.http import HttpResponseRedirect
from django.urls import path
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from timesheet.domain import fiches
from timesheet.domain.errors import Code, Refused
from timesheet.domain.health import ticker_status
from timesheet.models import Etat, FicheEvent, FicheTemps, FicheTempsQuerySet
from timesheet.templatetags.timesheet_time import hms, hms_ms
from timesheet.web.admin import fiche_pages as pages
from timesheet.web.admin.common import USERNAME, ActorFormAdmin, label_of, list_instant, live_span
from timesheet.web.admin.forms import FicheTempsForm


class FicheEventInline(admin.TabularInline):
    model = FicheEvent
    readonly_fields = ("at", "kind", "actor", "delta_hms", "temps_hms", "reason")
    fields = readonly_fields
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
        return hms_ms(event.delta)

    @admin.display(description=_("time charged after"))
    def temps_hms(self, event):
        return hms_ms(event.temps_impute)


# At most this many fiches are named in one message; the rest are counted.
NAMED_AT_MOST = 10


def fiche_name(fiche_id: int, libelle: str) -> str:
    """A fiche as a message names it: #12 Écriture (#12 without a label)."""
    return f"#{fiche_id} {libelle}" if libelle else f"#{fiche_id}"


def listed(names: list[str]) -> str:
    """``names`` joined, the first NAMED_AT_MOST of them, then how many more."""
    shown = ", ".join(names[:NAMED_AT_MOST])
    rest = len(names) - NAMED_AT_MOST
    if rest <= 0:
        return shown
    return ngettext("%(names)s and %(count)d more", "%(names)s and %(count)d more", rest) % {
        "names": shown,
        "count": rest,
    }


def refusal_groups(refusals: list[tuple[int, str, Refused]]) -> dict[str, list[str]]:
    """
    The refusals of an action, by reason: {reason: the fiches' names}. A
    fiche in the wrong state is refused with its own id; fiches found in the
    same state share one reason, their state.
    """
    wrong = [fiche_id for fiche_id, _libelle, refusal in refusals if refusal.code == Code.WRONG_STATE]
    states = dict(FicheTemps.objects.filter(pk__in=wrong).values_list("pk", "etat")) if wrong else {}
    keyed: dict[tuple[str, str], list[str]] = {}
    for fiche_id, libelle, refusal in refusals:
        state = states.get(fiche_id) if refusal.code == Code.WRONG_STATE else None
        key = ("state", state) if state in Etat.values else ("message", refusal.message)
        keyed.setdefault(key, []).append(fiche_name(fiche_id, libelle))
    groups = {}
    for (kind, value), names in keyed.items():
        if kind == "state":
            value = ngettext("it is %(state)s.", "they are %(state)s.", len(names)) % {"state": Etat(value).label}
        groups[value] = names
    return groups


@admin.register(FicheTemps)
class FicheTempsAdmin(ActorFormAdmin):
    form = FicheTempsForm
    # Few columns, so that the list fits a laptop's screen beside the sidebars: since when a
    # fiche runs and whether it was auto-stopped are said under its state; the stored time
    # (the ticker's last settle) is on the fiche's own page, the live time here.
    list_display = ["libelle_or_id", "projet", "owner", "state", "time_charged"]
    list_display_links = ["libelle_or_id"]
    list_filter = ["etat", "projet", ("owner", admin.RelatedOnlyFieldListFilter), "auto_stopped"]
    list_select_related = ["projet", "owner"]
    search_fields = ["libelle", "projet__designation", f"owner__{USERNAME}"]
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
        return cast(FicheTempsQuerySet, super().get_queryset(request)).with_live_time()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["projet", "owner", "libelle"]
        return ["projet", "owner", "libelle", *self.readonly_fields]

    def get_changeform_initial_data(self, request):
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change):
        if not change:
            # The form checked the service's rules (an inactive owner is refused there, with its message).
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
        except Refused as refused:
            self.message_user(request, refused.message, messages.ERROR)
            request.fiche_refused = True  # nothing saved: no "changed successfully", nothing in the log

    def log_change(self, request, obj, message):
        if getattr(request, "fiche_refused", False):
            return None
        return super().log_change(request, obj, message)

    def response_change(self, request, obj):
        if getattr(request, "fiche_refused", False):
            return HttpResponseRedirect(request.path)  # back to the form, its refusal said
        return super().response_change(request, obj)

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

    @admin.display(description=_("time charged"), ordering="temps_live")
    def time_charged(self, fiche):
        """The list's one time column: the live time, which keeps counting while the fiche runs."""
        return self.live_time(fiche)

    @admin.display(description=_("state"), ordering="etat")
    def state(self, fiche):
        """The state's badge, and under it since when the fiche runs, or that the ticker stopped it."""
        badge = self.etat_badge(fiche)
        if fiche.en_calcul_depuis:
            return format_html(
                '{}<span class="list-note">{}</span>',
                badge,
                mark_safe(  # the translated text escaped, the instant's markup kept
                    conditional_escape(gettext("since %(instant)s"))
                    % {"instant": list_instant(fiche, "en_calcul_depuis")}
                ),
            )
        if fiche.auto_stopped:
            return format_html('{}<span class="list-note">{}</span>', badge, label_of(FicheTemps, "auto_stopped"))
        return badge

    def _transition(self, request, queryset, action, service, done_message):
        """
        Apply ``service`` to each selected fiche; say once how many it changed,
        and each reason for a refusal once, with the fiches it applies to.
        """
        done, refusals = 0, []
        for fiche_id, libelle in queryset.order_by("pk").values_list("pk", "libelle"):
            try:
                service(fiche_id=fiche_id, actor=request.user)
                done += 1
            except Refused as refusal:
                refusals.append((fiche_id, libelle, refusal))
        if done:
            self.message_user(request, done_message(done), messages.SUCCESS)
        for reason, names in refusal_groups(refusals).items():
            self.message_user(
                request,
                gettext("%(fiches)s: Cannot %(action)s: %(reason)s")
                % {"fiches": listed(names), "action": fiches.ACTIONS[action], "reason": reason},
                messages.WARNING,
            )

    @admin.action(description=_("Start the selected fiches"), permissions=["change"])
    def start(self, request, queryset):
        self._transition(
            request,
            queryset,
            "start",
            fiches.start_fiche,
            lambda n: ngettext("%(count)d fiche started.", "%(count)d fiches started.", n) % {"count": n},
        )

    @admin.action(description=_("Pause the selected fiches"), permissions=["change"])
    def pause(self, request, queryset):
        self._transition(
            request,
            queryset,
            "pause",
            fiches.pause_fiche,
            lambda n: ngettext("%(count)d fiche paused.", "%(count)d fiches paused.", n) % {"count": n},
        )

    @admin.action(description=_("Finish the selected fiches"), permissions=["change"])
    def finish(self, request, queryset):
        self._transition(
            request,
            queryset,
            "finish",
            fiches.finish_fiche,
            lambda n: ngettext("%(count)d fiche finished.", "%(count)d fiches finished.", n) % {"count": n},
        )

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None) or {}
        changelist = context.get("cl")
        if changelist is not None:
            shown = changelist.queryset.order_by()
            totals = {
                **shown.aggregate(live=Sum("temps_live"), count=Count("pk")),
                "running": shown.running().count(),
            }
            live = totals["live"] or timedelta(0)
            context["totals"] = {
                "count": totals["count"],
                "running": totals["running"],
                "seconds": live.total_seconds(),
                "display": hms(live),
            }
            if not ticker_status()["healthy"]:
                context["ticker_warning"] = gettext(
                    "No ticker is alive: running fiches' stored time is not being refreshed "
                    "(their live time stays exact). Start it with: python manage.py run_fiches_ticker"
                )
        return response

    def get_urls(self):
        return [
            path(
                "export/",
                self.admin_site.admin_view(partial(pages.export_view, self)),
                name="timesheet_fichetemps_export",
            ),
            path(
                "report/",
                self.admin_site.admin_view(partial(pages.report_view, self)),
                name="timesheet_fichetemps_report",
            ),
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(partial(pages.adjust_view, self)),
                name="timesheet_fichetemps_adjust",
            ),
            *super().get_urls(),
        ]
