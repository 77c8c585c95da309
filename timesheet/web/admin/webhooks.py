"""Webhook subscriptions in the admin: edits and actions through the webhooks service, the delivery log beside."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from timesheet.core import limits
from timesheet.domain import webhooks
from timesheet.domain.errors import Refused
from timesheet.models import WebhookDelivery, WebhookSubscription
from timesheet.web.admin.common import ActorForm, ActorFormAdmin


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    readonly_fields = ("at", "event", "attempt", "ok", "status_code", "duration", "error")
    fields = readonly_fields
    extra = 0
    can_delete = False
    max_num = 0
    verbose_name_plural = _("latest deliveries")

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-id")


class SubscriptionForm(ActorForm):
    url = forms.URLField(label=_("URL"), max_length=limits.WEBHOOK_URL_MAX_LENGTH, assume_scheme="https")

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
    list_display = ["name", "url", "owner", "active", "cursor", "attempts", "failing_since", "next_attempt_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    readonly_fields = ["cursor", "attempts", "failing_since", "next_attempt_at", "disabled_reason", "created_at"]

    def get_fields(self, request, obj=None):
        # A new subscription has no delivery state yet: only what a person sets.
        editable = ["name", "url", "secret", "kinds", "owner", "active"]
        return editable if obj is None else [*editable, *self.readonly_fields]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # no deliveries before it exists

    inlines = [WebhookDeliveryInline]
    actions = ["enable"]

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

    @admin.action(description=_("Enable again, from where delivery stopped"), permissions=["change"])
    def enable(self, request, queryset):
        count = webhooks.enable_subscriptions(queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            ngettext("%(count)d subscription enabled.", "%(count)d subscriptions enabled.", count) % {"count": count},
        )
