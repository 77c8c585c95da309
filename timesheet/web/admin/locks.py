"""
Locked periods and people's profiles (time zone, language, reminders, the
first day of their weeks) in the admin, through the services.
"""

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from timesheet.domain import locks, notifications, profiles
from timesheet.domain.errors import Refused
from timesheet.models import LockedPeriod, Profile
from timesheet.web.admin.common import USERNAME, ActorForm, ActorFormAdmin


class LockForm(ActorForm):
    class Meta:
        model = LockedPeriod
        fields = ["until", "owner", "reason"]

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        until = cleaned.get("until")
        if until is not None:
            owner = cleaned.get("owner")
            try:  # the service's own rule, shown on the form
                locks.check_lockable(until=until, owner_id=owner.pk if owner else None, actor=self.actor)
            except Refused as refused:
                raise forms.ValidationError(refused.message) from None
        return cleaned


class ZoneForm(ActorForm):
    class Meta:
        model = Profile
        fields = ["user", "time_zone", "language", "reminder_running_hours", "end_of_day", "working_days", "week_start"]

    def clean_time_zone(self):
        if not self.cleaned_data["time_zone"]:
            return ""  # the site's
        try:  # the service's own rule, shown on the form
            return profiles.check_time_zone(self.cleaned_data["time_zone"])
        except Refused as refused:
            raise forms.ValidationError(refused.message) from None

    def clean_working_days(self):
        try:
            return notifications.clean_working_days(self.cleaned_data["working_days"])
        except Refused as refused:
            raise forms.ValidationError(refused.message) from None

    def clean(self):
        cleaned = super().clean() or {}
        user, week_start = cleaned.get("user"), cleaned.get("week_start")
        if user is not None and week_start is not None:
            try:  # the service's own rule, shown on the form
                profiles.check_week_start_change(user_id=user.pk, week_start=week_start, actor=self.actor)
            except Refused as refused:
                self.add_error("week_start", refused.message)
        return cleaned


@admin.register(LockedPeriod)
class LockedPeriodAdmin(ActorFormAdmin):
    form = LockForm
    list_display = ["until", "owner", "reason", "created_by", "created_at"]
    list_filter = [("owner", admin.RelatedOnlyFieldListFilter)]
    fields = ["until", "owner", "reason"]

    def has_change_permission(self, request, obj=None):
        return False  # a lock is made (or removed by whoever may delete it), never moved

    def save_model(self, request, obj, form, change):
        locked = locks.lock_days(until=obj.until, owner_id=obj.owner_id, actor=request.user, reason=obj.reason)
        obj.pk = locked.pk


@admin.register(Profile)
class ProfileAdmin(ActorFormAdmin):
    form = ZoneForm
    list_display = [
        "user",
        "time_zone",
        "language",
        "reminder_running_hours",
        "end_of_day",
        "working_days",
        "week_start",
    ]
    search_fields = [f"user__{USERNAME}", "time_zone"]

    def save_model(self, request, obj, form, change):
        try:
            with transaction.atomic():
                if obj.time_zone:
                    profiles.set_time_zone(user=obj.user, name=obj.time_zone, actor=request.user)
                notifications.set_reminders(
                    user=obj.user,
                    running_hours=obj.reminder_running_hours,
                    end_of_day=obj.end_of_day,
                    working_days=obj.working_days,
                )
                if obj.language:
                    notifications.set_language(user=obj.user, language=obj.language)
                profiles.set_week_start(user=obj.user, week_start=obj.week_start, actor=request.user)
        except Refused as refused:
            self.message_user(request, refused.message, messages.ERROR)
