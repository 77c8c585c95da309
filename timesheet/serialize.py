"""How fiches are shown as JSON, by the API and the stream."""

from datetime import timedelta

from .models import FicheTemps


def iso(value):
    return value.isoformat() if value is not None else None


def seconds(value: timedelta) -> float:
    return value / timedelta(microseconds=1) / 1_000_000


def fiche_json(fiche: FicheTemps) -> dict:
    """A fiche read through ``FicheTemps.objects.with_live_time()``, as the API shows it."""
    return {
        "id": fiche.pk,
        "projet": {"id": fiche.projet_id, "designation": fiche.projet.designation},
        "owner": {"id": fiche.owner_id, "username": fiche.owner.get_username()},
        "libelle": fiche.libelle,
        "etat": fiche.etat,
        "temps_impute": seconds(fiche.temps_impute),
        "temps_live": seconds(fiche.temps_live),
        "en_calcul_depuis": iso(fiche.en_calcul_depuis),
        "compte_jusqua": iso(fiche.compte_jusqua),
        "auto_stopped": fiche.auto_stopped,
        "created_at": iso(fiche.created_at),
        "updated_at": iso(fiche.updated_at),
        "server_time": iso(fiche.db_now),
    }
