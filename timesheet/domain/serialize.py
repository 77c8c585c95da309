"""How fiches are shown as JSON, by the API and the stream."""

from datetime import timedelta
from typing import cast

from django.contrib.auth import get_user_model
from django.db.models import F

from timesheet.models import FicheTemps, FicheTempsQuerySet

# What a fiche's JSON is made of: the columns of ``fiche_rows`` and the attributes ``fiche_json`` reads.
FIELDS = (
    "id",
    "projet_id",
    "owner_id",
    "libelle",
    "etat",
    "temps_impute",
    "temps_live",
    "en_calcul_depuis",
    "compte_jusqua",
    "auto_stopped",
    "created_at",
    "updated_at",
    "db_now",
)


def iso(value):
    return value.isoformat() if value is not None else None


def seconds(value: timedelta) -> float:
    return value / timedelta(microseconds=1) / 1_000_000


def row_json(row: dict) -> dict:
    """A row of ``fiche_rows`` (or the same values of a fiche in hand), as the API shows it."""
    return {
        "id": row["id"],
        "projet": {"id": row["projet_id"], "designation": row["designation"]},
        "owner": {"id": row["owner_id"], "username": row["username"]},
        "libelle": row["libelle"],
        "etat": row["etat"],
        "temps_impute": seconds(row["temps_impute"]),
        "temps_live": seconds(row["temps_live"]),
        "en_calcul_depuis": iso(row["en_calcul_depuis"]),
        "compte_jusqua": iso(row["compte_jusqua"]),
        "auto_stopped": row["auto_stopped"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "server_time": iso(row["db_now"]),
    }


def fiche_json(fiche: FicheTemps) -> dict:
    """A fiche read through ``FicheTemps.objects.with_live_time()``, as the API shows it."""
    row = {name: getattr(fiche, name) for name in FIELDS}
    return row_json({**row, "designation": fiche.projet.designation, "username": fiche.owner.get_username()})


def fiche_rows(fiches: FicheTempsQuerySet) -> FicheTempsQuerySet:
    """
    ``fiches`` (read through ``with_live_time()``) as the rows ``row_json``
    shows: a page of them costs half as much as building the models.
    """
    username = F(f"owner__{get_user_model().USERNAME_FIELD}")
    # Still a FicheTempsQuerySet, of dicts: get_visible_to() reads it as it reads fiches.
    return cast(FicheTempsQuerySet, fiches.values(*FIELDS, designation=F("projet__designation"), username=username))
