"""The fiche admin's forms: a fiche's fields, and an adjustment of its time."""

import re
from datetime import timedelta
from typing import Any, cast

from django import forms
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from timesheet.core import limits
from timesheet.domain import days, fiches
from timesheet.domain.errors import Refused
from timesheet.models import FicheTemps, Projet
from timesheet.templatetags.timesheet_time import hms
from timesheet.web.admin.common import ActorForm

# H:MM or H:MM:SS, hours of 1 to 6 digits, a leading minus to remove time.
HOURS_MINUTES = re.compile(r"(?P<sign>-?)(?P<hours>[0-9]{1,6}):(?P<minutes>[0-5][0-9])(?::(?P<seconds>[0-5][0-9]))?")


class HoursMinutesField(forms.DurationField):
    """
    A duration as people type one: H:MM (1:30 is an hour and a half) or
    H:MM:SS, a leading minus for a negative one; nothing else.
    """

    def to_python(self, value: Any) -> timedelta | None:
        if isinstance(value, timedelta):
            return value
        text = str(value or "").strip()
        if text in self.empty_values:
            return None
        typed = HOURS_MINUTES.fullmatch(text)
        if typed is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        duration = timedelta(
            hours=int(typed["hours"]), minutes=int(typed["minutes"]), seconds=int(typed["seconds"] or 0)
        )
        return -duration if typed["sign"] else duration

    def prepare_value(self, value: Any) -> Any:
        return hms(value) if isinstance(value, timedelta) else value


class AdjustForm(forms.Form):
    delta = HoursMinutesField(
        label=_("Duration"),
        help_text=_(
            "The time to add, as H:MM (1:30 adds an hour and a half) or H:MM:SS (0:00:45 adds 45 seconds); "
            "a leading minus removes it (-0:15 removes a quarter of an hour)."
        ),
    )
    reason = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=limits.ADJUSTMENT_REASON_MAX_LENGTH,
    )
    day = forms.DateField(
        label=_("Day"), required=False, help_text=_("The owner's local day it counts on (YYYY-MM-DD); empty for today.")
    )

    def __init__(self, *args: Any, owner_id: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner_id = owner_id  # whose local days the adjustment's day is

    def clean_delta(self):
        delta = self.cleaned_data["delta"]
        if not delta:
            raise forms.ValidationError(_("The adjustment must not be zero."))
        return delta

    def clean_day(self):
        day = self.cleaned_data["day"]
        if day is not None and day > days.today_for(self.owner_id):
            # The service's own refusal (adjust_fiche), said on the field rather than after a failed call.
            raise forms.ValidationError(
                gettext("%(day)s has not come yet for the owner: an adjustment counts on a day that has begun.")
                % {"day": day.isoformat()}
            )
        return day


class FicheTempsForm(ActorForm):
    class Meta:
        model = FicheTemps
        fields = ["projet", "owner", "libelle"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "projet" in self.fields:
            # A new project must be active; the fiche's own stays valid if it was deactivated since.
            cast(forms.ModelChoiceField, self.fields["projet"]).queryset = Projet.objects.filter(
                Q(actif=True) | Q(pk=self.instance.projet_id)
            )

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        owner, projet = cleaned.get("owner"), cleaned.get("projet")
        if owner is None or projet is None or self.actor is None:
            return cleaned
        if self.instance.pk is None:
            try:  # the service's own rules for a new fiche, shown on the form
                fiches.check_new_fiche(actor=self.actor, owner_id=owner.pk, projet_id=projet.pk)
            except Refused as refused:
                raise forms.ValidationError(refused.message) from None
            return cleaned
        moved = "projet" in self.changed_data
        if moved or "owner" in self.changed_data:
            try:  # the service's rule for a new project or owner: the project open to the owner (and active, if new)
                fiches.require_active_projet(projet.pk, owner=owner, actor=self.actor, active=moved)
            except Refused as refused:
                self.add_error("projet" if moved else "owner", refused.message)
        return cleaned
