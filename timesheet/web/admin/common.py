"""What the admin's pages share: the live time's markup and the read-only admin of records the product writes."""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

# The user model's name field (username by default), for the admins' searches and orderings.
USERNAME = get_user_model().USERNAME_FIELD


def live_span(seconds: float, rate: int, text: str) -> SafeString:
    """A duration the page's script keeps counting (``rate`` 1) or leaves as it is (0)."""
    return format_html(
        '<span class="live-time" data-live-seconds="{}" data-live-rate="{}">{}</span>', seconds, rate, text
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the product alone: staff look, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ActorForm(forms.ModelForm):
    """A form that knows who fills it in, so that its clean() can ask the services' rules."""

    actor: Any = None


class ActorFormAdmin(admin.ModelAdmin):
    """A ModelAdmin whose ``ActorForm`` is made for the request's user (a class per request, never shared)."""

    def get_form(
        self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})
