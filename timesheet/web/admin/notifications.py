"""
The notifications in the admin, for staff to look at: the outbox, and the
delivery log of the channels that send (email, webhooks), with an action to
send a delivery again now through the delivery's own service.
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from timesheet.domain import notify
from timesheet.models import Notification, NotificationDelivery, NotificationPreference
from timesheet.web.admin.common import USERNAME, ReadOnlyAdmin, label_of, list_instant
from timesheet.web.admin.records import ListStyles, shortened


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "notification",
        "channel",
        "subscription",
        "state",
        "attempts",
        "next_attempt",
        "sent",
        "short_error",
    ]
    list_filter = ["state", "channel"]
    list_select_related = ["notification__recipient", "subscription"]
    search_fields = [f"notification__recipient__{USERNAME}", "subscription__name"]
    actions = ["send_again"]
    Media = ListStyles

    @admin.display(description=label_of(NotificationDelivery, "next_attempt_at"), ordering="next_attempt_at")
    def next_attempt(self, delivery):
        return list_instant(delivery, "next_attempt_at") if delivery.state == delivery.State.PENDING else None

    @admin.display(description=label_of(NotificationDelivery, "sent_at"), ordering="sent_at")
    def sent(self, delivery):
        return list_instant(delivery, "sent_at")

    @admin.display(description=label_of(NotificationDelivery, "last_error"))
    def short_error(self, delivery):
        return shortened(delivery.last_error)

    def has_resend_permission(self, request):
        """Sending again changes the delivery's state: for those who may change deliveries."""
        return request.user.has_perm("timesheet.change_notificationdelivery")

    @admin.action(description=_("Send again now"), permissions=["resend"])
    def send_again(self, request, queryset):
        count = notify.resend(delivery_ids=queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            ngettext(
                "%(count)d delivery will be sent again now.", "%(count)d deliveries will be sent again now.", count
            )
            % {"count": count},
        )


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["recipient", "kind", "occurred", "read", "fanned_out"]
    list_filter = ["kind", "fanned_out"]
    list_select_related = ["recipient"]
    search_fields = [f"recipient__{USERNAME}"]
    date_hierarchy = "occurred_at"
    Media = ListStyles

    @admin.display(description=label_of(Notification, "occurred_at"), ordering="occurred_at")
    def occurred(self, notification):
        return list_instant(notification, "occurred_at")

    @admin.display(description=label_of(Notification, "read_at"), boolean=True, ordering="read_at")
    def read(self, notification):
        return notification.read_at is not None


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    """A person's choices, per kind and channel (no row: every channel); people set theirs on their settings page."""

    list_display = ["user", "kind", "channel", "enabled"]
    list_filter = ["kind", "channel", "enabled"]
    list_editable = ["enabled"]
    search_fields = [f"user__{USERNAME}"]
    autocomplete_fields = ["user"]
