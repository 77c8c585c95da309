"""
Every change to a fiche, shared by the worker, the admin and the API.

Each transition is one compare-and-set UPDATE on the database's clock inside
a short transaction that also writes the audit event: a double click, two
tabs, the admin racing the API or a tick racing a pause all end in one correct
state, and a refused transition raises TransitionRefused and changes nothing.
Each function has an ``a``-prefixed async twin for async views.
"""

import functools
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models.functions import Now

from .dbtime import DurationSum, later_of, settled
from .models import Etat, FicheEvent, FicheTemps, Projet

__all__ = [
    "TransitionRefused",
    "aadjust_fiche",
    "acreate_fiche",
    "adjust_fiche",
    "afinish_fiche",
    "apause_fiche",
    "astart_fiche",
    "create_fiche",
    "finish_fiche",
    "pause_fiche",
    "start_fiche",
]


class TransitionRefused(Exception):
    """
    A change that cannot be made; nothing was changed.

    ``code`` says why: ``not_found`` (no such fiche or project, or one the
    actor may not see), ``forbidden`` (visible but not the actor's to make),
    ``wrong_state`` (e.g. pausing a paused fiche), ``negative_time`` (an
    adjustment below zero) or ``invalid`` (bad arguments).
    """

    def __init__(self, message, *, code, fiche_id=None, etat=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.fiche_id = fiche_id
        self.etat = etat


_SNAPSHOT = ("id", "owner_id", "etat", "temps_impute", "compte_jusqua", "en_calcul_depuis")


def _lock(fiche_id, actor):
    """Return the fiche's current values, locked until the transaction ends, if the actor may see it."""
    row = FicheTemps.objects.select_for_update().filter(pk=fiche_id).values(*_SNAPSHOT).first()
    if row is None or not (actor.is_staff or row["owner_id"] == actor.pk):
        raise TransitionRefused(f"Fiche {fiche_id} does not exist.", code="not_found", fiche_id=fiche_id)
    return row


def _refuse_state(row, action):
    etat = Etat(row["etat"])
    raise TransitionRefused(
        f"Cannot {action} fiche {row['id']}: it is {etat.label}.", code="wrong_state", fiche_id=row["id"], etat=etat
    )


def _compare_and_set(row, **changes):
    """Apply the changes only if the fiche is still in the state read; return whether it was."""
    return FicheTemps.objects.filter(pk=row["id"], etat=row["etat"]).update(updated_at=Now(), **changes) == 1


def _settled():
    """Changes that settle a running fiche's time up to now and clear its marks."""
    return {
        "temps_impute": settled(),
        "compte_jusqua": None,
        "en_calcul_depuis": None,
    }


def _log(fiche, kind, actor, *, delta=timedelta(0), reason=""):
    FicheEvent.objects.create(
        fiche=fiche,
        kind=kind,
        actor=actor,
        at=fiche.updated_at,
        delta=delta,
        temps_impute=fiche.temps_impute,
        reason=reason,
    )


def _reload(fiche_id):
    return FicheTemps.objects.select_related("projet", "owner").get(pk=fiche_id)


def stretch_length(before: dict, temps_after: timedelta) -> timedelta:
    """
    The length of a running stretch that just ended, from the fiche's values
    ``before`` its stop: what earlier settles accounted (start to mark) plus
    what the stop itself settled.
    """
    return (before["compte_jusqua"] - before["en_calcul_depuis"]) + (temps_after - before["temps_impute"])


def create_fiche(*, projet_id: int, owner, actor, libelle: str = "", start: bool = False) -> FicheTemps:
    """Create a fiche for ``owner`` on an active project, paused or already running; return it."""
    if owner.pk != actor.pk and not actor.is_staff:
        raise TransitionRefused("Only staff may create a fiche for someone else.", code="forbidden")
    if len(libelle) > FicheTemps._meta.get_field("libelle").max_length:
        raise TransitionRefused("The label is too long (200 characters at most).", code="invalid")
    if "\x00" in libelle:
        raise TransitionRefused("The label cannot contain NUL characters.", code="invalid")
    with transaction.atomic():
        projet = Projet.objects.filter(pk=projet_id).values("actif").first()
        if projet is None:
            raise TransitionRefused(f"Project {projet_id} does not exist.", code="not_found")
        if not projet["actif"]:
            raise TransitionRefused(f"Project {projet_id} is not active.", code="invalid")
        running = {"etat": Etat.EN_CALCUL, "compte_jusqua": Now(), "en_calcul_depuis": Now()} if start else {}
        fiche = FicheTemps.objects.create(projet_id=projet_id, owner=owner, libelle=libelle, **running)
        fiche = _reload(fiche.pk)
        _log(fiche, FicheEvent.Kind.CREATED, actor)
        if start:
            _log(fiche, FicheEvent.Kind.STARTED, actor)
    return fiche


def start_fiche(*, fiche_id: int, actor) -> FicheTemps:
    """Start (or resume) a paused fiche at the database's now; return it."""
    with transaction.atomic():
        row = _lock(fiche_id, actor)
        if row["etat"] != Etat.EN_PAUSE or not _compare_and_set(
            row, etat=Etat.EN_CALCUL, compte_jusqua=Now(), en_calcul_depuis=Now(), auto_stopped=False
        ):
            _refuse_state(row, "start")
        fiche = _reload(fiche_id)
        _log(fiche, FicheEvent.Kind.STARTED, actor)
    return fiche


def pause_fiche(*, fiche_id: int, actor) -> FicheTemps:
    """Pause a running fiche, settling its time up to the database's now; return it."""
    with transaction.atomic():
        row = _lock(fiche_id, actor)
        if row["etat"] != Etat.EN_CALCUL or not _compare_and_set(row, etat=Etat.EN_PAUSE, **_settled()):
            _refuse_state(row, "pause")
        fiche = _reload(fiche_id)
        _log(fiche, FicheEvent.Kind.PAUSED, actor, delta=stretch_length(row, fiche.temps_impute))
    return fiche


def finish_fiche(*, fiche_id: int, actor) -> FicheTemps:
    """Finish a running or paused fiche, settling a running one up to now; return it."""
    with transaction.atomic():
        row = _lock(fiche_id, actor)
        running = row["etat"] == Etat.EN_CALCUL
        changes = _settled() if running else {}
        if row["etat"] == Etat.TERMINEE or not _compare_and_set(row, etat=Etat.TERMINEE, **changes):
            _refuse_state(row, "finish")
        fiche = _reload(fiche_id)
        stretch = stretch_length(row, fiche.temps_impute) if running else timedelta(0)
        _log(fiche, FicheEvent.Kind.FINISHED, actor, delta=stretch)
    return fiche


def adjust_fiche(*, fiche_id: int, actor, delta: timedelta, reason: str) -> FicheTemps:
    """
    Add ``delta`` (negative to remove time) to a fiche's time, with a reason;
    staff only, never below zero. A running fiche is settled up to now first.
    """
    if not isinstance(delta, timedelta) or not delta:
        raise TransitionRefused("The adjustment must be a non-zero duration.", code="invalid", fiche_id=fiche_id)
    if not reason or not reason.strip():
        raise TransitionRefused("An adjustment needs a reason.", code="invalid", fiche_id=fiche_id)
    if not actor.is_staff:
        raise TransitionRefused("Only staff may adjust a fiche's time.", code="forbidden", fiche_id=fiche_id)
    with transaction.atomic():
        row = _lock(fiche_id, actor)
        if row["etat"] == Etat.EN_CALCUL:
            new_temps = DurationSum(settled(), delta)
            changes = {"temps_impute": new_temps, "compte_jusqua": later_of("compte_jusqua")}
        else:
            new_temps = DurationSum("temps_impute", delta)
            changes = {"temps_impute": new_temps}
        applied = (
            FicheTemps.objects.filter(pk=fiche_id, etat=row["etat"])
            .alias(new_temps=new_temps)
            .filter(new_temps__gte=timedelta(0))
            .update(updated_at=Now(), **changes)
        )
        if not applied:
            raise TransitionRefused(
                f"Cannot remove {-delta} from fiche {fiche_id}: its time cannot go below zero.",
                code="negative_time",
                fiche_id=fiche_id,
                etat=Etat(row["etat"]),
            )
        fiche = _reload(fiche_id)
        _log(fiche, FicheEvent.Kind.ADJUSTED, actor, delta=delta, reason=reason.strip())
    return fiche


def _async_twin(function):
    """Return an async function that runs ``function`` in Django's sync thread."""

    @functools.wraps(function)
    async def twin(**kwargs):
        return await sync_to_async(function)(**kwargs)

    twin.__name__ = twin.__qualname__ = f"a{function.__name__}"
    twin.__doc__ = f"Async twin of :func:`{function.__name__}`."
    return twin


acreate_fiche = _async_twin(create_fiche)
astart_fiche = _async_twin(start_fiche)
apause_fiche = _async_twin(pause_fiche)
afinish_fiche = _async_twin(finish_fiche)
aadjust_fiche = _async_twin(adjust_fiche)
