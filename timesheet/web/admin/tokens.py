"""Personal API tokens in the admin: made (shown once) and revoked, never edited."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from timesheet.core import limits
from timesheet.domain import tokens
from timesheet.models import ApiToken
from timesheet.web.admin.common import USERNAME, ActorForm, ActorFormAdmin, label_of, list_instant


class ApiTokenForm(ActorForm):
    lifetime_days = forms.IntegerField(
        label=_("Valid for (days)"),
        min_value=1,
        max_value=limits.TOKEN_MAX_LIFETIME.days,
        initial=limits.TOKEN_DEFAULT_LIFETIME.days,
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
class ApiTokenAdmin(ActorFormAdmin):
    form = ApiTokenForm
    # Compact: the status says until when a token is valid (or since when it is not); instants as YYYY-MM-DD HH:MM.
    list_display = ["name", "user", "prefix", "scope", "status", "last_used"]
    list_filter = ["scope", ("user", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", f"user__{USERNAME}"]
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return False  # a token is made or revoked, never edited

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

    class Media:
        css = {"all": ["timesheet/admin.css"]}

    @admin.display(description=_("status"), ordering="expires_at")
    def status(self, token):
        """Valid or expired, with the expiry under it; revoked, with when."""
        if token.revoked_at:
            state, field = gettext("revoked"), "revoked_at"
        else:
            state = gettext("expired") if token.expires_at <= timezone.now() else gettext("valid")
            field = "expires_at"
        return format_html(
            '{}<span class="list-note">{} {}</span>', state, label_of(ApiToken, field), list_instant(token, field)
        )

    @admin.display(description=label_of(ApiToken, "last_used_at"), ordering="last_used_at")
    def last_used(self, token):
        return list_instant(token, "last_used_at")

    @admin.action(description=_("Revoke the selected tokens"), permissions=["delete"])
    def revoke(self, request, queryset):
        for token_id in queryset.values_list("pk", flat=True):
            tokens.revoke_token(token_id=token_id, actor=request.user)
        self.message_user(request, gettext("Revoked."))
