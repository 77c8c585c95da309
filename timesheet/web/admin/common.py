"""What the admin's pages share: the live time's markup and the read-only admin of records the product writes."""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from timesheet.templatetags.timesheet_time import instant

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


def label_of(model: Any, field: str) -> Any:
    """The verbose name of ``model``'s ``field``: a column's header said once, where the field is defined."""
    return model._meta.get_field(field).verbose_name


def shown_instant(obj: Any, field: str) -> str | None:
    """
    ``obj``'s ``field`` as an instant (YYYY-MM-DD HH:MM), or None when it is
    not one: also a value the database has not given yet (a ``db_default``
    on an object not saved or not read back). A list shows None as its empty
    value; a read-only field of a form would say "None": give it
    ``get_empty_value_display()`` instead.
    """
    return instant(getattr(obj, field, None)) or None


def list_instant(obj: Any, field: str) -> SafeString | None:
    """``shown_instant`` for a list's narrow column: it may wrap between the day and the time, nowhere else."""
    text = shown_instant(obj, field)
    if text is None:
        return None
    day, time = text.split(" ")
    return format_html('<span class="nowrap">{}</span> <span class="nowrap">{}</span>', day, time)
