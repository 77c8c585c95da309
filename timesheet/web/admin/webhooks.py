"""Webhook subscriptions in the admin: edits and actions through the webhooks service, the delivery log beside."""

from typing import Any

from django import forms
from django.contrib import admin
from django.utils.text import capfirst
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from timesheet.core import limits
from timesheet.domain import webhooks
from timesheet.domain.errors import Refused
from timesheet.models import FicheEvent, NotificationKind, WebhookDelivery, WebhookSubscription
from timesheet.templatetags.timesheet_time import hms_ms
from timesheet.web.admin.common import ActorForm, ActorFormAdmin, label_of, shown_instant


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    readonly_fields = ("delivered_at", "event", "attempt", "ok", "status_code", "took", "error")
    fields = readonly_fields
    extra = 0
    can_delete = False
    max_num = 0
    verbose_name_plural = _("latest deliveries")

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-id")

    def has_add_permission(self, request, obj=None):
        return False  # the delivery worker writes the log; no empty row to fill in

    @admin.display(description=label_of(WebhookDelivery, "at"), ordering="at")
    def delivered_at(self, delivery):
        return shown_instant(delivery, "at") or self.get_empty_value_display()

    @admin.display(description=label_of(WebhookDelivery, "duration"))
    def took(self, delivery):
        return hms_ms(delivery.duration) or self.get_empty_value_display()


def every_kind() -> list[tuple[str, Any]]:
    """
    The kinds a subscription may choose, read when a form is made: the fiche
    events, then the notifications (sent only to subscriptions that name them).
    """
    return [*FicheEvent.Kind.choices, *NotificationKind.choices]


class KindsField(forms.MultipleChoiceField):
    """Event kinds as checkboxes, stored as a list of kind names (none: every kind)."""

    widget = forms.CheckboxSelectMultiple


class SubscriptionForm(ActorForm):
    url = forms.URLField(label=_("URL"), max_length=limits.WEBHOOK_URL_MAX_LENGTH, assume_scheme="https")
    kinds = KindsField(
        label=capfirst(label_of(WebhookSubscription, "kinds")),
        choices=every_kind,
        required=False,
        help_text=_("The kinds of fiche events sent; none checked: every kind."),
    )

    class Meta:
        model = WebhookSubscription
        fields = ["name", "url", "secret", "kinds", "owner", "active"]

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        owner = cleaned.get("owner")
        try:  # the service's own rule, shown on the form
            webhooks.check_may_subscribe(actor=self.actor, owner_id=owner.pk if owner else None)
        except Refused as refused:
            raise forms.ValidationError(refused.message) from None
        url = cleaned.get("url")
        if url and "url" in self.changed_data:
            try:  # where webhooks may be sent: the service's rule again
                webhooks.check_destination(url=url)
            except Refused as refused:
                self.add_error("url", refused.message)
        return cleaned


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ActorFormAdmin):
    form = SubscriptionForm
    list_display = ["name", "url", "owner", "active", "cursor", "attempts", "failing", "next_attempt"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    readonly_fields = ["cursor", "attempts", "failing", "next_attempt", "disabled_reason", "created"]
    inlines = [WebhookDeliveryInline]
    actions = ["enable"]

    class Media:
        css = {"all": ["timesheet/admin.css"]}

    def get_fields(self, request, obj=None):
        # A new subscription has no delivery state yet: only what a person sets.
        editable = ["name", "url", "secret", "kinds", "owner", "active"]
        return editable if obj is None else [*editable, *self.readonly_fields]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # no deliveries before it exists

    def add_view(self, request, form_url="", extra_context=None):
        # Django's "Add %s" reads badly in French ("Ajout de abonnement webhook"): a title of its own.
        return super().add_view(
            request, form_url, {"title": gettext("Add a webhook subscription"), **(extra_context or {})}
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        title = (
            gettext("Change a webhook subscription")
            if self.has_change_permission(request)
            else gettext("View a webhook subscription")
        )
        return super().change_view(request, object_id, form_url, {"title": title, **(extra_context or {})})

    def save_model(self, request, obj, form, change):
        if not change:
            created = webhooks.create_subscription(
                name=obj.name,
                url=obj.url,
                secret=obj.secret,
                kinds=obj.kinds,
                owner_id=obj.owner_id,
                actor=request.user,
            )
            obj.pk = created.pk
            return
        # Only what the form changed, never the delivery's progress (a save() would write back
        # the cursor, attempts and lease as this request read them, undoing a worker's progress).
        fields = {"owner": "owner_id"}
        changes = {fields.get(name, name): getattr(obj, fields.get(name, name)) for name in form.changed_data}
        if changes:
            webhooks.update_subscription(subscription_id=obj.pk, actor=request.user, **changes)

    @admin.display(description=label_of(WebhookSubscription, "failing_since"), ordering="failing_since")
    def failing(self, subscription):
        return shown_instant(subscription, "failing_since") or self.get_empty_value_display()

    @admin.display(description=label_of(WebhookSubscription, "next_attempt_at"), ordering="next_attempt_at")
    def next_attempt(self, subscription):
        return shown_instant(subscription, "next_attempt_at") or self.get_empty_value_display()

    @admin.display(description=label_of(WebhookSubscription, "created_at"), ordering="created_at")
    def created(self, subscription):
        return shown_instant(subscription, "created_at") or self.get_empty_value_display()

    @admin.action(description=_("Enable again, from where delivery stopped"), permissions=["change"])
    def enable(self, request, queryset):
        count = webhooks.enable_subscriptions(queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            ngettext("%(count)d subscription enabled.", "%(count)d subscriptions enabled.", count) % {"count": count},
        )
