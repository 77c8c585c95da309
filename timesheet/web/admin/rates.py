"""
Hourly rates in the admin: set and withdrawn through ``timesheet.domain.rates``.

A rate names its level's subjects (a person, a project, a client, or none:
the site's default), an hourly amount in the site's currency and the
instant it begins, typed in the staff member's own time zone; its pages are
drawn in that zone. A rate that has begun priced time: it is only shown,
never changed nor deleted. One not begun yet is changed (withdrawn and set
again, in one transaction) or withdrawn.
"""

from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.functions import Now
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from timesheet.core import limits
from timesheet.core.dbtime import db_now
from timesheet.domain import days, rates
from timesheet.domain.errors import Refused
from timesheet.models import Rate
from timesheet.web.admin.common import USERNAME, ActorForm, ActorFormAdmin, label_of, list_instant

# What a datetime-local input sends and shows: a local date and time, to the minute.
LOCAL_INPUT = "%Y-%m-%dT%H:%M"
# "From now" begins this far past the database's now, rounded to the second: far enough that the
# service, asked a moment later, still finds it ahead (a rate may not begin in the past).
NOW_MARGIN = timedelta(seconds=2)

# Each level of ``rates.LEVELS``, in words.
LEVEL_NAMES = {
    ("user", "projet"): _("a person on a project"),
    ("projet",): _("a project"),
    ("client",): _("a client"),
    ("user",): _("a person"),
    (): _("the site's default"),
}


def level_of(rate: Rate) -> tuple[str, ...]:
    """The columns ``rate`` names: its level, as ``rates.LEVELS`` spells it."""
    return tuple(column for column in rates.COLUMNS if getattr(rate, f"{column}_id") is not None)


def starting_now() -> datetime:
    """The instant a rate "from now" begins: just past the database's now, to the second."""
    return db_now().replace(microsecond=0) + NOW_MARGIN


class LocalInstantField(forms.DateTimeField):
    """
    An instant typed as a local date and time in ``zone`` (a datetime-local
    input's YYYY-MM-DDTHH:MM; an explicit offset is kept), and shown in that
    zone to the minute, the hidden initial value alike, so that a value left
    as shown reads as unchanged. A time that does not exist in the zone or
    happens twice there (a DST change) is refused.
    """

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format=LOCAL_INPUT)

    def __init__(self, *, zone: ZoneInfo | None = None, **kwargs: Any) -> None:
        self.zone = zone or days.zone_of(None)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> datetime | None:
        with timezone.override(self.zone):
            return super().to_python(value)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            local = value.astimezone(self.zone) if timezone.is_aware(value) else value
            return local.strftime(LOCAL_INPUT)
        return value


class _DryRun(Exception):
    """Rolls back what a form's check asked of the services."""


class RateForm(ActorForm):
    hourly = forms.DecimalField(min_value=0, max_digits=12, localize=True)
    effective_from = LocalInstantField(required=False, show_hidden_initial=True)

    class Meta:
        model = Rate
        fields = ["user", "projet", "client", "effective_from"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        zone = days.owner_zone(self.actor.pk) if self.actor is not None else days.zone_of(None)
        code = rates.currency()
        hourly, starts = self.fields["hourly"], cast(LocalInstantField, self.fields["effective_from"])
        hourly.label = gettext("Hourly rate (%(currency)s)") % {"currency": code}
        hourly.help_text = gettext("A decimal amount an hour, such as %(example)s.") % {
            "example": rates.money(8550, code)
        }
        starts.zone = zone
        starts.label = capfirst(label_of(Rate, "effective_from"))
        starts.help_text = gettext(
            "Your local date and time (%(zone)s). Left as first shown on a new rate, or empty: from now. "
            "Never in the past: a rate applies only to time after it."
        ) % {"zone": zone.key}
        if self.instance.pk is not None:
            self.initial["hourly"] = rates.money(self.instance.hourly_minor)
        else:
            self.initial["effective_from"] = db_now().astimezone(zone).replace(second=0, microsecond=0)

    def clean_hourly(self) -> int:
        """The amount in whole minor units, as the service counts it."""
        amount = self.cleaned_data["hourly"]
        try:
            minor = rates.parse_money(amount, name=str(self.fields["hourly"].label))
            rates.check_rate(minor)
        except Refused as refused:
            raise forms.ValidationError(refused.message) from None
        return minor

    def clean_effective_from(self) -> datetime:
        """
        The instant typed; left as it was: a changed rate's own, a new one's
        now; empty: now.
        """
        typed = self.cleaned_data.get("effective_from")
        touched = "effective_from" in self.changed_data
        if not touched and self.instance.pk is not None:
            return self.instance.effective_from
        if typed is None or not touched:
            return starting_now()
        zone = cast(LocalInstantField, self.fields["effective_from"]).zone
        if not limits.FIRST_DAY <= typed.astimezone(zone).date() <= limits.LAST_DAY:
            raise forms.ValidationError(gettext("Dates lie between the years 2 and 9998."))
        return typed

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if not self.errors:
            try:  # the services' own rules, asked in a savepoint rolled back: nothing is kept
                with transaction.atomic():
                    self.apply()
                    raise _DryRun
            except _DryRun:
                pass
            except Refused as refused:
                raise forms.ValidationError(refused.message) from None
        return cleaned

    def _post_clean(self) -> None:
        """No validation by the model: ``clean`` asked the services, whose messages say more than its constraints'."""

    def apply(self) -> Rate:
        """
        What saving the form does: the rate it changes withdrawn (one not
        begun) and the rate set, in one transaction; return the rate set.
        """
        cleaned = self.cleaned_data
        with transaction.atomic():
            if self.instance.pk is not None:
                rates.withdraw_rate(rate_id=self.instance.pk)
            return rates.set_rate(
                hourly_minor=cleaned["hourly"],
                effective_from=cleaned["effective_from"],
                actor=self.actor,
                user_id=cleaned["user"].pk if cleaned.get("user") else None,
                projet_id=cleaned["projet"].pk if cleaned.get("projet") else None,
                client_id=cleaned["client"].pk if cleaned.get("client") else None,
            )


def begun(rate: Rate) -> bool:
    """Whether ``rate`` has begun (priced time) by the database's clock: read with it in the admin's lists."""
    known = getattr(rate, "begun", None)
    return bool(known) if known is not None else rate.effective_from <= db_now()


@admin.register(Rate)
class RateAdmin(ActorFormAdmin):
    form = RateForm
    list_display = ["level", "subject", "rate", "starts"]
    list_filter = [
        ("projet", admin.RelatedOnlyFieldListFilter),
        ("client", admin.RelatedOnlyFieldListFilter),
        ("user", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["user", "projet", "client"]
    search_fields = ["projet__designation", "client__name", f"user__{USERNAME}"]
    autocomplete_fields = ["user", "projet", "client"]
    readonly_fields = ["level", "rate", "starts", "created_by", "created_at"]
    actions = ["withdraw"]

    class Media:
        css = {"all": ["timesheet/admin.css"]}

    def get_queryset(self, request):
        # Begun or not, by the database's clock, read with each rate.
        begun_now = ExpressionWrapper(Q(effective_from__lte=Now()), output_field=BooleanField())
        return super().get_queryset(request).annotate(begun=begun_now)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "projet", "client", "hourly", "effective_from"]
        if begun(obj):
            return ["level", "user", "projet", "client", "rate", "starts", "created_by", "created_at"]
        return ["user", "projet", "client", "hourly", "effective_from", "created_by", "created_at"]

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or not begun(obj))

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or not begun(obj))

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # through the service instead: the "withdraw" action
        return actions

    def save_model(self, request, obj, form, change):
        try:
            saved = form.apply()
        except Refused as refused:  # changed since the form's check, a moment ago
            self.message_user(request, refused.message, messages.ERROR)
            obj.pk = None
            return
        for field in Rate._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))

    def response_add(self, request, obj, post_url_continue=None):
        if obj.pk is None:
            return HttpResponseRedirect(reverse("admin:timesheet_rate_changelist"))
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        if obj.pk is None:
            return HttpResponseRedirect(reverse("admin:timesheet_rate_changelist"))
        return super().response_change(request, obj)

    def delete_model(self, request, obj):
        try:
            rates.withdraw_rate(rate_id=obj.pk)
        except Refused as refused:
            self.message_user(request, refused.message, messages.ERROR)

    def _in_staff_zone(self, request, view, *args, **kwargs):
        """A page drawn with its instants in the staff member's time zone, as its form reads them."""
        zone = days.owner_zone(request.user.pk)
        with timezone.override(zone):
            response = view(request, *args, **kwargs)
            if isinstance(response, TemplateResponse) and not response.is_rendered:
                response.render()
        return response

    def changelist_view(self, request, extra_context=None):
        subtitle = gettext("Instants in %(zone)s.") % {"zone": days.owner_zone(request.user.pk).key}
        return self._in_staff_zone(request, super().changelist_view, {"subtitle": subtitle, **(extra_context or {})})

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return self._in_staff_zone(request, super().changeform_view, object_id, form_url, extra_context)

    @admin.display(description=_("level"))
    def level(self, rate):
        return LEVEL_NAMES[level_of(rate)]

    @admin.display(description=_("subject"))
    def subject(self, rate):
        """Whom or what the rate prices: a person on a project, a project, a client, a person; none for the site."""
        if rate.user_id is not None and rate.projet_id is not None:
            return gettext("%(person)s on %(projet)s") % {"person": rate.user, "projet": rate.projet}
        return rate.projet or rate.client or rate.user or None

    @admin.display(description=_("hourly rate"), ordering="hourly_minor")
    def rate(self, rate):
        return f"{rates.money(rate.hourly_minor)} {rates.currency()}"

    @admin.display(description=label_of(Rate, "effective_from"), ordering="effective_from")
    def starts(self, rate):
        """When it begins, and under it whether it has not yet (it may still be changed or withdrawn)."""
        if begun(rate):
            return list_instant(rate, "effective_from")
        return format_html(
            '{}<span class="list-note">{}</span>', list_instant(rate, "effective_from"), gettext("not begun yet")
        )

    @admin.action(description=_("Withdraw the selected rates not begun yet"), permissions=["delete"])
    def withdraw(self, request, queryset):
        """Each selected rate withdrawn through the service; the reason a rate is kept said once."""
        done, kept = 0, dict[str, int]()
        for rate_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                rates.withdraw_rate(rate_id=rate_id)
                done += 1
            except Refused as refused:
                kept[refused.message] = kept.get(refused.message, 0) + 1
        if done:
            self.message_user(
                request,
                ngettext("%(count)d rate withdrawn.", "%(count)d rates withdrawn.", done) % {"count": done},
                messages.SUCCESS,
            )
        for reason, count in kept.items():
            self.message_user(
                request,
                ngettext("%(count)d rate kept: %(reason)s", "%(count)d rates kept: %(reason)s", count)
                % {"count": count, "reason": reason},
                messages.WARNING,
            )
