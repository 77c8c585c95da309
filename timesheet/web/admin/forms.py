"""The fiche admin's forms: a fiche's fields, and an adjustment of its time."""

from typing import cast

from django import forms
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from timesheet.core import limits
from timesheet.domain import fiches
from timesheet.domain.errors import Refused
from timesheet.models import FicheTemps, Projet
from timesheet.web.admin.common import ActorForm


class AdjustForm(forms.Form):
    delta = forms.DurationField(
        label=_("Duration"),
        help_text=_("H:MM:SS to add, e.g. 0:30:00; -0:30:00 removes half an hour."),
    )
    reason = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=limits.ADJUSTMENT_REASON_MAX_LENGTH,
    )
    day = forms.DateField(
        label=_("Day"), required=False, help_text=_("The owner's local day it counts on (YYYY-MM-DD); empty for today.")
    )

    def clean_delta(self):
        delta = self.cleaned_data["delta"]
        if not delta:
            raise forms.ValidationError(_("The adjustment must not be zero."))
        return delta


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
        if self.instance.pk is None and owner is not None and projet is not None and self.actor is not None:
            try:  # the service's own rules for a new fiche, shown on the form
                fiches.check_new_fiche(actor=self.actor, owner_id=owner.pk, projet_id=projet.pk)
            except Refused as refused:
                raise forms.ValidationError(refused.message) from None
        return cleaned
