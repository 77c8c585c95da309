"""Locked periods and people's time zones in the admin, through the locks and profiles services."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model

from timesheet.domain import locks, profiles
from timesheet.domain.errors import Refused
from timesheet.models import LockedPeriod, Profile

USERNAME = get_user_model().USERNAME_FIELD


@admin.register(LockedPeriod)
class LockedPeriodAdmin(admin.ModelAdmin):
    list_display = ["until", "owner", "reason", "created_by", "created_at"]
    list_filter = [("owner", admin.RelatedOnlyFieldListFilter)]
    fields = ["until", "owner", "reason"]

    def has_change_permission(self, request, obj=None):
        return False  # a lock is made (or removed by whoever may delete it), never moved

    def save_model(self, request, obj, form, change):
        locked = locks.lock_days(until=obj.until, owner_id=obj.owner_id, actor=request.user, reason=obj.reason)
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
                        locks.check_lockable(until=until, owner_id=owner.pk if owner else None, actor=actor)
                    except Refused as refused:
                        raise forms.ValidationError(refused.message) from None
                return cleaned

        return LockForm


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "time_zone"]
    search_fields = [f"user__{USERNAME}", "time_zone"]

    def save_model(self, request, obj, form, change):
        try:
            profiles.set_time_zone(user=obj.user, name=obj.time_zone, actor=request.user)
        except Refused as refused:
            self.message_user(request, refused.message, messages.ERROR)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        class ZoneForm(form):
            def clean_time_zone(self):
                try:  # the service's own rule, shown on the form
                    return profiles.check_time_zone(self.cleaned_data["time_zone"])
                except Refused as refused:
                    raise forms.ValidationError(refused.message) from None

        return ZoneForm
