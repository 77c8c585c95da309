"""
Every change to a fiche: create, start, pause, finish, switch, adjust, edit,
and the stops the ticker makes. Shared by the admin, the API, the people's
page and the workers.

Each transition runs in one short transaction that reads the fiche under a row
lock, checks the rule, writes the change on the database's clock and the audit
event: a double click, two tabs, the admin racing the API or a tick racing a
pause all end in one correct state, and a refused change raises ``Refused``
and changes nothing. Each function has an ``a``-prefixed async twin for async
views.
"""

import functools
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Case, DateTimeField, Exists, Expression, F, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Now
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext_lazy

from timesheet.core import conf, limits, wake
from timesheet.core.dbtime import DurationSum, db_now, later_of, settled
from timesheet.core.prepared import Prepared, PreparedInsert, PreparedUpdate, columns, instance
from timesheet.domain import budget_marks, days, ledger, locks
from timesheet.domain.errors import Code, Refused
from timesheet.domain.twins import async_twin
from timesheet.models import (
    Etat,
    FicheEvent,
    FicheTemps,
    Projet,
    Stretch,
    acts_on_everyones_fiches,
    stand_in,
    visible_row,
)

# A fiche's values a transition reads under its lock.
Row = dict[str, Any]

# What a transition reads before it writes: enough to compute a stopped stretch's length.
STOP_COLUMNS = ("id", "owner_id", "projet_id", "libelle", "etat", "temps_impute", "compte_jusqua", "en_calcul_depuis")


def locked(fiche_id: int, actor: Any, *, with_projet: bool = False) -> Row:
    """
    Return the fiche's current values (``STOP_COLUMNS``, and with
    ``with_projet`` its project's state: ``projet_state``), if the actor may
    see it, locked until the transaction ends.

    A row lock rather than a compare-and-set: the audit event needs the
    values the change started from (a stopped stretch's length), which a lone
    UPDATE cannot return on every backend. Under the lock the read and the
    write see the same row; a racing tick or transition waits, then sees the
    new state. On SQLite the IMMEDIATE transaction is that lock.
    """
    # Among one's own first: no one else's row locked (on SQLite, under the write lock).
    own, everyones = _locking(own=True, with_projet=with_projet), _locking(own=False, with_projet=with_projet)
    row = visible_row(actor, own, everyones, fiche_id=fiche_id)
    if row is None:
        raise Refused(_("Fiche %(id)s does not exist.") % {"id": fiche_id}, code=Code.NOT_FOUND)
    if row["owner_id"] != actor.pk and not acts_on_everyones_fiches(actor):
        raise Refused(_("Changing someone else's fiche needs the permission to change fiches."), code=Code.FORBIDDEN)
    return row


@functools.cache
def _locking(*, own: bool, with_projet: bool) -> Prepared:
    """
    The read of ``locked``: among the actor's (``user``'s) own fiches or
    everyone's, with the project's state or not; prepared once, as every transition makes it.
    """

    def build(fiche_id: int, user: int | None = None) -> "QuerySet[Any]":
        person = None if user is None else stand_in(user)
        fiches = FicheTemps.objects.select_for_update(of=("self",))  # of the fiche's row only: never a project's
        fiches = fiches.owned_by(person) if own else fiches
        read: QuerySet[Any] = fiches.filter(pk=fiche_id).values(
            *STOP_COLUMNS, **(projet_state(person) if with_projet else {})
        )
        return read

    return Prepared(build, "fiche_id", *(("user",) if own or with_projet else ()))


ACTIONS = {
    "start": pgettext_lazy("a fiche", "start"),
    "pause": pgettext_lazy("a fiche", "pause"),
    "finish": pgettext_lazy("a fiche", "finish"),
    "switch from": pgettext_lazy("a fiche", "switch from"),
    "switch to": pgettext_lazy("a fiche", "switch to"),
}


def _require_state(row: Row, action: str, *allowed: str) -> None:
    if row["etat"] not in allowed:
        raise Refused(
            _("Cannot %(action)s fiche %(id)s: it is %(state)s.")
            % {"action": ACTIONS.get(action, action), "id": row["id"], "state": Etat(row["etat"]).label},
            code=Code.WRONG_STATE,
        )


def reload(fiche_id: int) -> FicheTemps:
    """
    The fiche as it is now, with its live time (``with_live_time``), its
    project and its owner; what every transition returns.
    """
    row = _RELOADING.one(fiche_id=fiche_id)
    if row is None:
        raise FicheTemps.DoesNotExist(f"Fiche {fiche_id} does not exist.")
    fiche = instance(FicheTemps, row)
    fiche.temps_live, fiche.db_now = row["temps_live"], row["db_now"]  # type: ignore[attr-defined]
    fiche.projet = instance(Projet, row, "projet__")
    fiche.owner = instance(get_user_model(), row, "owner__")
    return fiche


# reload()'s read, as select_related would make it.
_RELOADING = Prepared(
    lambda fiche_id: (
        FicheTemps.objects.with_live_time()
        .filter(pk=fiche_id)
        .values(
            *columns(FicheTemps),
            *columns(Projet, "projet__"),
            *columns(get_user_model(), "owner__"),
            "temps_live",
            "db_now",
        )
    ),
    "fiche_id",
)


def log_event(fiche: FicheTemps, kind: str, actor: Any, **fields: Any) -> None:
    """Write the event of a change to ``fiche``, and mark the budgets its time counts in (before and after a move)."""
    moved = (fields.get("changes") or {}).get("projet") or []
    budget_marks.touch([fiche.projet_id, *moved])
    wake.announce()
    FicheEvent.objects.create(
        fiche=fiche, kind=kind, actor=actor, at=fiche.updated_at, temps_impute=fiche.temps_impute, **fields
    )


def clean_libelle(libelle: object) -> str:
    """``libelle`` if it may label a fiche; refused as invalid otherwise."""
    if not isinstance(libelle, str):
        raise Refused(_("The label must be text."), code=Code.INVALID)
    if len(libelle) > limits.LABEL_MAX_LENGTH:
        raise Refused(
            _("The label is too long (%(limit)s characters at most).") % {"limit": limits.LABEL_MAX_LENGTH},
            code=Code.INVALID,
        )
    if "\x00" in libelle:
        raise Refused(_("The label cannot contain NUL characters."), code=Code.INVALID)
    return libelle


def _projet_actif() -> Subquery:
    """
    The fiche's project's ``actif``, for ``locked``: a subquery, not a join,
    so that on PostgreSQL a fiche moved to another project while the read
    waited for its lock is still found, with that project's state as the
    read began.
    """
    return Subquery(Projet.objects.filter(pk=OuterRef("projet_id")).order_by().values("actif"))


def _open_to(user: Any, projet: str) -> Exists:
    """Whether the project whose id is the outer query's ``projet`` is open to ``user``: ``Projet.objects.open_to``."""
    return Exists(Projet.objects.open_to(user).filter(pk=OuterRef(projet)))


def projet_state(actor: Any) -> dict[str, Subquery]:
    """
    The annotations of ``locked`` that a new run on the fiche's project
    needs (``require_projet_of``): its ``actif``, and whether it is open to
    ``actor`` (the owner, in most calls), read with the fiche in the same
    query, as subqueries (see ``_projet_actif``).
    """
    return {
        "projet_actif": _projet_actif(),
        "projet_open": _open_to(actor, "projet_id"),
        "projet_used_up": budget_marks.used_up("projet_id"),
    }


def _inactive(user_id: int) -> Refused:
    """The refusal of an inactive user as an owner: no project is open to them."""
    return Refused(_("User %(id)s does not exist.") % {"id": user_id}, code=Code.INVALID)


def _user(user_id: int, actor: Any) -> Any:
    """The user ``user_id``: the actor when they are the one (no query), else read (a fiche's owner is kept)."""
    return actor if user_id == actor.pk else get_user_model().objects.get(pk=user_id)


def require_active_projet(projet_id: int, *, owner: Any, actor: Any = None, active: bool = True) -> None:
    """
    Refuse unless the project exists, is open to ``owner`` (a user: the one
    rule of teams, ``Projet.objects.open_to``) and, if ``active``, is active;
    one query. To an ``actor`` (the owner by default) who may not see it
    (``Projet.objects.seen_by``), a project not open to the owner does not
    exist, as a missing one; one who may see it is told why.
    """
    actor = owner if actor is None else actor
    found = (
        Projet.objects.filter(pk=projet_id)
        .annotate(open=_open_to(owner, "pk"))
        .values_list("actif", "open", "designation")
        .first()
    )
    missing = Refused(_("Project %(id)s does not exist.") % {"id": projet_id}, code=Code.NOT_FOUND)
    if found is None:
        raise missing
    actif, is_open, designation = found
    if not is_open:
        if not Projet.objects.seen_by(actor).filter(pk=projet_id).exists():
            raise missing
        if not owner.is_active:
            raise _inactive(owner.pk)
        raise Refused(
            _("Project “%(projet)s” is open only to its teams' members, and %(owner)s is not one of them.")
            % {"projet": designation, "owner": owner.get_username()},
            code=Code.FORBIDDEN,
        )
    if active and not actif:
        raise Refused(_("Project %(id)s is not active.") % {"id": projet_id}, code=Code.INVALID)


def require_projet_of(row: Row, actor: Any) -> None:
    """
    Refuse a new run on the project of the fiche ``row`` (a start, a switch
    to it, a continuation) unless it is still open to the fiche's owner (a
    team may have lost them since: refused as forbidden, the project being
    theirs to see through their fiche) and active. A ``row`` read by
    ``locked`` ``with_projet`` costs no query when the actor
    is the owner; else the project is read again for the owner.
    """
    if row["owner_id"] == actor.pk and "projet_open" in row:
        is_open, actif = row["projet_open"], row["projet_actif"]
    else:
        owner = _user(row["owner_id"], actor)
        if not owner.is_active:
            raise _inactive(owner.pk)
        is_open, actif = (
            Projet.objects.filter(pk=row["projet_id"])
            .annotate(open=_open_to(owner, "pk"))
            .values_list("open", "actif")
            .get()
        )
    if not is_open:
        raise Refused(
            _("The project of fiche %(id)s is open only to its teams' members, and its owner is not one of them.")
            % {"id": row["id"]},
            code=Code.FORBIDDEN,
        )
    if not actif:
        raise Refused(_("Project %(id)s is not active.") % {"id": row["projet_id"]}, code=Code.INVALID)
    if "projet_used_up" in row:
        budget_marks.refuse_used_up(row["projet_id"], row["projet_used_up"])
    else:
        budget_marks.refuse_if_exhausted(row["projet_id"])


def stretch_length(before: Row, temps_after: timedelta) -> timedelta:
    """
    The length of a running stretch that just ended, from the fiche's values
    ``before`` its stop: what earlier settles accounted (start to mark) plus
    what the stop itself settled.
    """
    length: timedelta = (before["compte_jusqua"] - before["en_calcul_depuis"]) + (temps_after - before["temps_impute"])
    return length


def stop_rows(
    rows: list[Row],
    *,
    etat: str,
    kind: str,
    actor: Any,
    at: Expression | F | None = None,
    offset: timedelta = timedelta(0),
    reason: str = "",
    auto_stopped: bool = False,
) -> int:
    """
    Stop the running fiches whose values before are ``rows`` (locked by the
    caller, read with ``STOP_COLUMNS``) at the instant ``at`` + ``offset``
    (an expression over the row; the database's now by default, never before
    the mark), settling their time up to exactly that instant: time settled
    past it is taken back. Close each one's stretch there and write one event
    for it; return how many.
    """
    ids = [row["id"] for row in rows]
    _settle_stopped(ids, etat=etat, at=at, offset=offset, auto_stopped=auto_stopped)
    after = dict(FicheTemps.objects.filter(pk__in=ids).values_list("id", "temps_impute"))
    _record_stops(rows, after, kind=kind, actor=actor, reason=reason)
    return len(rows)


def _stop_one(
    row: Row, *, etat: str, kind: str, actor: Any, at: Expression | F | None = None, reason: str = ""
) -> FicheTemps:
    """Stop one running fiche as ``stop_rows`` does; return it read again, which reads its settled time too."""
    _settle_stopped([row["id"]], etat=etat, at=at)
    fiche = reload(row["id"])
    _record_stops([row], {fiche.pk: fiche.temps_impute}, kind=kind, actor=actor, reason=reason)
    return fiche


def _settle_stopped(
    ids: list[int],
    *,
    etat: str,
    at: Expression | F | None = None,
    offset: timedelta = timedelta(0),
    auto_stopped: bool = False,
) -> None:
    """Settle the running fiches ``ids`` up to ``at`` + ``offset`` and leave them in ``etat``, not running."""
    if len(ids) == 1 and at is None and not offset:  # a pause or a finish now: most stops
        _STOPPING_NOW[auto_stopped].run(fiche_id=ids[0], etat=etat)
        return
    FicheTemps.objects.filter(pk__in=ids).update(**_stopped(etat, at=at, offset=offset, auto_stopped=auto_stopped))


def _stopped(etat: Any, *, at: Expression | F | None, offset: timedelta, auto_stopped: bool) -> dict[str, Any]:
    """The changes that stop a running fiche: see ``_settle_stopped``."""
    until = later_of("compte_jusqua") if at is None else at
    return {
        "etat": etat,
        "temps_impute": settled(until=until, offset=offset, clamp=False),
        "compte_jusqua": None,
        "en_calcul_depuis": None,
        "run_slot": None,
        "auto_stopped": auto_stopped,
        "updated_at": Now(),
    }


# A stop of one fiche now, prepared once for each value of auto_stopped.
_STOPPING_NOW = {
    auto_stopped: PreparedUpdate(
        lambda fiche_id, etat, auto_stopped=auto_stopped: (
            FicheTemps.objects.filter(pk=fiche_id),
            _stopped(etat, at=None, offset=timedelta(0), auto_stopped=auto_stopped),
        ),
        "fiche_id",
        "etat",
        text=("etat",),
    )
    for auto_stopped in (False, True)
}


def _record_stops(rows: list[Row], after: dict[int, timedelta], *, kind: str, actor: Any, reason: str) -> None:
    """Close the stretches of the stopped ``rows`` and write their events; ``after`` maps ids to settled times."""
    events, ends = [], {}
    for row in rows:
        stretch = stretch_length(row, after[row["id"]])
        ends[row["id"]] = row["en_calcul_depuis"] + stretch
        events.append(
            FicheEvent(
                fiche_id=row["id"],
                kind=kind,
                actor=actor,
                at=ends[row["id"]],
                delta=stretch,
                temps_impute=after[row["id"]],
                reason=reason,
            )
        )
    # One UPDATE closes the open stretches of up to 1,000 fiches: no read first,
    # and a CASE short enough to stay cheap per row.
    chunks = list(ends.items())
    if len(chunks) == 1:
        _CLOSING_ONE.run(fiche_id=chunks[0][0], end=chunks[0][1])
        chunks = []
    for start in range(0, len(chunks), 1000):
        chunk = dict(chunks[start : start + 1000])
        Stretch.objects.filter(fiche_id__in=chunk, ended_at__isnull=True).update(
            ended_at=Case(*(When(fiche_id=fiche_id, then=Value(end)) for fiche_id, end in chunk.items()))
        )
    budget_marks.touch({row["projet_id"] for row in rows})
    wake.announce()
    _write_events(events)


# The event of one start or stop by a person, prepared once: nearly every transition writes one.
_EVENT = PreparedInsert(
    lambda fiche_id, kind, actor_id, at, delta, temps_impute, reason: FicheEvent(
        fiche_id=fiche_id, kind=kind, actor_id=actor_id, at=at, delta=delta, temps_impute=temps_impute, reason=reason
    ),
    *("fiche_id", "kind", "actor_id", "at", "delta", "temps_impute", "reason"),
    text=("kind", "reason"),
    instants=("at",),
    spans=("delta", "temps_impute"),
)


def _write_events(events: list[FicheEvent]) -> None:
    """Write ``events``: one by a person through its prepared insert, any others as a batch."""
    if len(events) == 1 and events[0].actor_id is not None and not events[0].changes and events[0].applies_to is None:
        (event,) = events
        _EVENT.run(
            fiche_id=event.fiche_id,
            kind=event.kind,
            actor_id=event.actor_id,
            at=event.at,
            delta=event.delta,
            temps_impute=event.temps_impute,
            reason=event.reason,
        )
    else:
        FicheEvent.objects.bulk_create(events)


# A start's stretch, prepared once for each value of ``exclusive``; on PostgreSQL skipped rather than
# refused where a constraint stands in the way, so that the transaction stays usable to say why.
_STRETCH = {
    exclusive: PreparedInsert(
        lambda fiche_id, owner_id, started_at, exclusive=exclusive: Stretch(
            fiche_id=fiche_id, owner_id=owner_id, started_at=started_at, exclusive=exclusive
        ),
        *("fiche_id", "owner_id", "started_at"),
        instants=("started_at",),
        skip_conflicts=True,
    )
    for exclusive in (False, True)
}


# The owner's running slots, prepared once; unordered, so that they are read from the small index of running slots.
_RUN_SLOTS = Prepared(
    lambda owner: FicheTemps.objects.running().filter(owner_id=owner).order_by().values("run_slot", "id"), "owner"
)


# The stretch of one stopped fiche closed, prepared once.
_CLOSING_ONE = PreparedUpdate(
    lambda fiche_id, end: (Stretch.objects.filter(fiche_id=fiche_id, ended_at__isnull=True), {"ended_at": end}),
    "fiche_id",
    "end",
    instants=("end",),
)


def _slot_for(owner_id: int) -> int | None:
    """
    A free running slot of the owner (None when FICHE_MAX_RUNNING_PER_OWNER
    is 0: no limit); refused as ``limit_reached`` when every one is taken.
    """
    limit = conf.max_running_per_owner()
    if not limit:
        return None
    taken = {row["run_slot"]: row["id"] for row in _RUN_SLOTS.rows(owner=owner_id)}
    for slot in range(limit):
        if slot not in taken:
            return slot
    running = min(taken.values())
    raise Refused(
        ngettext(
            "Fiche %(id)s is already running: pause it, or switch from it (at most %(limit)s running fiche).",
            "Fiche %(id)s is already running: pause it, or switch from it (at most %(limit)s running fiches).",
            limit,
        )
        % {"id": running, "limit": limit},
        code=Code.LIMIT_REACHED,
        running_fiche_id=running,
    )


def _start(
    fiche_id: int, owner_id: int, actor: Any, *, at: Expression | F | None = None, reason: str = ""
) -> FicheTemps:
    """
    Start a paused fiche (locked by the caller, as its owner's row, held
    exclusively: ``locks.guard(..., exclusive=True)``) at ``at`` (the
    database's now by default) in a free slot of its owner; open its stretch
    and write the event; return it. On PostgreSQL, the exclusion constraint
    refuses a stretch inside the owner's other time.
    """
    # No other start of the owner gets in between the read of the free slot and its write; the
    # database's unique slot still stands behind it.
    slot = _slot_for(owner_id)
    try:
        if at is None:
            _STARTING_NOW[slot is None].run(fiche_id=fiche_id, slot=slot)
        else:
            FicheTemps.objects.filter(pk=fiche_id).update(**_running(at, slot))
    except IntegrityError:
        raise Refused(_("Another fiche of this owner has just started."), code=Code.LIMIT_REACHED) from None
    fiche = reload(fiche_id)
    since = fiche.en_calcul_depuis
    assert since is not None  # running, so marked (the database's constraint)
    if not _STRETCH[ledger.exclusive()].run(fiche_id=fiche_id, owner_id=owner_id, started_at=since):
        # Skipped by a constraint (PostgreSQL: ON CONFLICT DO NOTHING, no savepoint): the owner's time in the
        # way is refused as ``overlap``, naming it; anything else is a broken ledger.
        ledger.require_no_overlap(owner_id, since, None)
        raise IntegrityError(f"The stretch of fiche {fiche_id} from {since.isoformat()} was refused by a constraint.")
    budget_marks.touch([fiche.projet_id])
    wake.announce()
    started = FicheEvent(
        fiche_id=fiche_id,
        kind=FicheEvent.Kind.STARTED,
        actor=actor,
        at=since,
        temps_impute=fiche.temps_impute,
        reason=reason,
    )
    _write_events([started])
    return fiche


def _running(at: Expression | F, slot: int | None) -> dict[str, Any]:
    """The changes that start a paused fiche: see ``_start``."""
    return {
        "etat": Etat.EN_CALCUL,
        "compte_jusqua": at,
        "en_calcul_depuis": at,
        "run_slot": slot,
        "auto_stopped": False,
        "updated_at": Now(),
    }


# A start now, prepared once with a slot and once without (None is written into the SQL).
_STARTING_NOW = {
    False: PreparedUpdate(
        lambda fiche_id, slot: (FicheTemps.objects.filter(pk=fiche_id), _running(Now(), slot)), "fiche_id", "slot"
    ),
    True: PreparedUpdate(lambda fiche_id: (FicheTemps.objects.filter(pk=fiche_id), _running(Now(), None)), "fiche_id"),
}


def restart(row: Row, *, at: datetime, reason: str) -> FicheTemps:
    """Start again, from ``at``, a fiche (locked by the caller) that was just stopped there: its run goes on."""
    return _start(row["id"], row["owner_id"], None, at=Value(at, output_field=DateTimeField()), reason=reason)


def _as_of(owner_id: int, fiche_id: int, at: datetime, actor: Any) -> tuple[Value, str]:
    """
    The instant ``at`` for a start "as of" an earlier time, checked: past but
    not too far back, after the owner's other time and outside their locked
    days (unless the actor overrides locks); return it as a value and the
    reason to audit.
    """
    at = ledger.instant(at, what=_("the start"))
    ledger.require_running_start(at, owner_id=owner_id, now=db_now())
    note = locks.guard(owner_id, at, actor, exclusive=True)
    ledger.require_no_overlap(owner_id, at, None, fiche_id=fiche_id)
    reason = f"Started as of {at.isoformat()}.{note}"
    return Value(at, output_field=DateTimeField()), reason


def _stop_instant(row: Row, at: datetime) -> datetime:
    """Check that ``at`` lies in the fiche's current stretch and is not in the future; return it."""
    at = ledger.instant(at, what=_("the stop instant"))
    zone = days.owner_zone(row["owner_id"])
    if at > db_now():
        raise Refused(
            _("Cannot stop fiche %(id)s in the future (%(at)s).")
            % {"id": row["id"], "at": ledger.local_text(at, zone)},
            code=Code.INVALID,
        )
    if at < row["en_calcul_depuis"]:
        raise Refused(
            _("Cannot stop fiche %(id)s at %(at)s: it has run only since %(since)s.")
            % {
                "id": row["id"],
                "at": ledger.local_text(at, zone),
                "since": ledger.local_text(row["en_calcul_depuis"], zone),
            },
            code=Code.INVALID,
        )
    return at


def _check_owner(*, actor: Any, owner_id: int) -> Any:
    """
    Refuse a new fiche for ``owner_id`` unless it is the actor's own, or
    staff's for an active user; return the owner (the actor, or the user read).
    """
    if owner_id == actor.pk:
        return actor
    if not actor.has_perm("timesheet.add_fichetemps"):
        raise Refused(_("Only staff may create a fiche for someone else."), code=Code.FORBIDDEN)
    owner = get_user_model().objects.filter(pk=owner_id, is_active=True).first()
    if owner is None:
        raise _inactive(owner_id)
    return owner


def check_new_fiche(*, actor: Any, owner_id: int, projet_id: int) -> None:
    """Refuse what ``create_fiche`` would refuse of its owner and project, without creating anything."""
    owner = _check_owner(actor=actor, owner_id=owner_id)
    require_active_projet(projet_id, owner=owner, actor=actor)


def create_fiche(
    *,
    projet_id: int,
    actor: Any,
    owner_id: int | None = None,
    libelle: str = "",
    start: bool = False,
    at: datetime | None = None,
) -> FicheTemps:
    """
    Create a fiche on an active project open to the user ``owner_id`` (by
    default the actor; someone else only by staff), paused or already running (since
    the database's now, or as of ``at``, an earlier instant after the owner's
    other time); return it.
    """
    owner_id = actor.pk if owner_id is None else owner_id
    assert owner_id is not None
    owner = _check_owner(actor=actor, owner_id=owner_id)
    libelle = clean_libelle(libelle)
    if at is not None and not start:
        raise Refused(_("A start instant needs the fiche to start."), code=Code.INVALID)
    with transaction.atomic():
        require_active_projet(projet_id, owner=owner, actor=actor)
        note = ""
        if start:
            budget_marks.refuse_if_exhausted(projet_id)
            if at is None:  # the owner's row held, exclusively as every start holds it, before the fiche is made
                note = locks.guard(owner_id, None, actor, exclusive=True).lstrip()
        fiche = FicheTemps.objects.create(projet_id=projet_id, owner_id=owner_id, libelle=libelle)
        log_event(reload(fiche.pk), FicheEvent.Kind.CREATED, actor)
        if not start:
            return reload(fiche.pk)
        if at is None:
            return _start(fiche.pk, owner_id, actor, reason=note)
        since, reason = _as_of(owner_id, fiche.pk, at, actor)
        return _start(fiche.pk, owner_id, actor, at=since, reason=reason)


def start_fiche(*, fiche_id: int, actor: Any, at: datetime | None = None) -> FicheTemps:
    """
    Start (or resume) a paused fiche at the database's now, or as of ``at``
    (an earlier instant after the owner's other time: "I began at 9:00"), if
    its owner may run one more and its project is still open to them and
    active; return it.
    """
    with transaction.atomic():
        row = locked(fiche_id, actor, with_projet=True)
        _require_state(row, "start", Etat.EN_PAUSE)
        require_projet_of(row, actor)
        if at is None:
            note = locks.guard(row["owner_id"], None, actor, exclusive=True).lstrip()
            return _start(fiche_id, row["owner_id"], actor, reason=note)
        since, reason = _as_of(row["owner_id"], fiche_id, at, actor)
        return _start(fiche_id, row["owner_id"], actor, at=since, reason=reason)


def _stop_now_or_at(row: Row, *, etat: str, kind: str, actor: Any, at: datetime | None) -> FicheTemps:
    """
    Stop a running fiche (locked) now, or at ``at``: checked against its
    stretch and the locked days, audited; return it.
    """
    if at is None:
        return _stop_one(row, etat=etat, kind=kind, actor=actor)
    instant = _stop_instant(row, at)
    note = locks.guard(row["owner_id"], instant, actor)
    return _stop_one(
        row,
        etat=etat,
        kind=kind,
        actor=actor,
        at=Value(instant, output_field=DateTimeField()),
        reason=f"Stopped at {instant.isoformat()}.{note}",
    )


def pause_fiche(*, fiche_id: int, actor: Any, at: datetime | None = None) -> FicheTemps:
    """
    Pause a running fiche, settling its time up to the database's now, or up
    to ``at``, an earlier instant of its current stretch ("I stopped at
    17:40": the time after it is taken back); return it.
    """
    with transaction.atomic():
        row = locked(fiche_id, actor)
        _require_state(row, "pause", Etat.EN_CALCUL)
        return _stop_now_or_at(row, etat=Etat.EN_PAUSE, kind=FicheEvent.Kind.PAUSED, actor=actor, at=at)


def finish_fiche(*, fiche_id: int, actor: Any, at: datetime | None = None) -> FicheTemps:
    """Finish a running or paused fiche, settling a running one up to now (or to ``at``, as a pause); return it."""
    with transaction.atomic():
        row = locked(fiche_id, actor)
        _require_state(row, "finish", Etat.EN_CALCUL, Etat.EN_PAUSE)
        if row["etat"] == Etat.EN_CALCUL:
            return _stop_now_or_at(row, etat=Etat.TERMINEE, kind=FicheEvent.Kind.FINISHED, actor=actor, at=at)
        if at is not None:
            raise Refused(
                _("Fiche %(id)s is paused: there is no running time to stop at.") % {"id": fiche_id}, code=Code.INVALID
            )
        FicheTemps.objects.filter(pk=fiche_id).update(etat=Etat.TERMINEE, updated_at=Now())
        fiche = reload(fiche_id)
        log_event(fiche, FicheEvent.Kind.FINISHED, actor)
    return fiche


def switch_fiche(*, from_id: int, to_id: int, actor: Any) -> tuple[FicheTemps, FicheTemps]:
    """
    Pause the running fiche ``from_id`` and start the paused fiche ``to_id``
    of the same owner at one database instant, in one transaction: no gap,
    no overlap, both audited; return both.
    """
    if from_id == to_id:
        raise Refused(_("Switching needs two different fiches."), code=Code.INVALID)
    with transaction.atomic():
        # Locked in id order, so that two switches of the same pair cannot deadlock.
        rows = {
            fiche_id: locked(fiche_id, actor, with_projet=fiche_id == to_id) for fiche_id in sorted((from_id, to_id))
        }
        source, target = rows[from_id], rows[to_id]
        _require_state(source, "switch from", Etat.EN_CALCUL)
        _require_state(target, "switch to", Etat.EN_PAUSE)
        if source["owner_id"] != target["owner_id"]:
            raise Refused(_("Both fiches of a switch must have the same owner."), code=Code.INVALID)
        require_projet_of(target, actor)
        note = locks.guard(target["owner_id"], None, actor, exclusive=True).lstrip()
        # One instant, read once: never before the running fiche's mark.
        instant = Value(max(db_now(), source["compte_jusqua"]), output_field=DateTimeField())
        paused = _stop_one(source, etat=Etat.EN_PAUSE, kind=FicheEvent.Kind.PAUSED, actor=actor, at=instant)
        return paused, _start(to_id, target["owner_id"], actor, at=instant, reason=note)


def _below_zero(delta: timedelta, fiche_id: int) -> Refused:
    return Refused(
        _("Cannot remove %(delta)s from fiche %(id)s: its time cannot go below zero.")
        % {"delta": -delta, "id": fiche_id},
        code=Code.NEGATIVE_TIME,
    )


def too_much(fiche_id: int) -> Refused:
    """The refusal of a change that would put more time in a fiche than ``FICHE_MAX_TOTAL_HOURS``."""
    return Refused(
        _("Fiche %(id)s would hold more than the %(hours)s hours one fiche may hold.")
        % {"id": fiche_id, "hours": f"{conf.fiche_max_total() / timedelta(hours=1):g}"},
        code=Code.INVALID,
    )


def adjust_fiche(*, fiche_id: int, actor: Any, delta: timedelta, reason: str, day: date | None = None) -> FicheTemps:
    """
    Add ``delta`` (negative to remove time) to a fiche's time, with a reason,
    counted on ``day`` (the owner's local date, never in the future; today by
    default); staff only, at most ``ADJUSTMENT_MAX_HOURS`` either way, never
    below zero nor above ``FICHE_MAX_TOTAL_HOURS``, never on a locked day. A
    running fiche is settled up to now first. Return the fiche.
    """
    if not isinstance(delta, timedelta) or not delta:
        raise Refused(_("The adjustment must be a non-zero duration."), code=Code.INVALID)
    largest = conf.adjustment_max()
    if abs(delta) > largest:
        raise Refused(
            _("An adjustment is at most %(hours)s hours either way.") % {"hours": f"{largest / timedelta(hours=1):g}"},
            code=Code.INVALID,
        )
    if day is not None and not (isinstance(day, date) and limits.FIRST_DAY <= day <= limits.LAST_DAY):
        raise Refused(_("The day of an adjustment must be a date (YYYY-MM-DD)."), code=Code.INVALID)
    if not isinstance(reason, str) or not reason.strip():
        raise Refused(_("An adjustment needs a reason."), code=Code.INVALID)
    if not actor.has_perm("timesheet.adjust_fichetemps"):
        raise Refused(_("Only staff may adjust a fiche's time."), code=Code.FORBIDDEN)
    with transaction.atomic():
        row = locked(fiche_id, actor)
        today = days.today_for(row["owner_id"])
        day = day or today
        if day > today:
            raise Refused(
                _("%(day)s has not come yet for the owner: an adjustment counts on a day that has begun.")
                % {"day": day.isoformat()},
                code=Code.INVALID,
            )
        note = locks.guard_day(row["owner_id"], day, actor)
        new_temps: Expression
        changes: dict[str, Expression]
        if row["etat"] == Etat.EN_CALCUL:
            # Counted without the running stretch: a later stop at its start would take all of it back.
            before_stretch = row["temps_impute"] - (row["compte_jusqua"] - row["en_calcul_depuis"])
            if before_stretch + delta < timedelta(0):
                raise _below_zero(delta, fiche_id)
            new_temps = DurationSum(settled(), delta)
            changes = {"temps_impute": new_temps, "compte_jusqua": later_of("compte_jusqua")}
        else:
            new_temps = DurationSum("temps_impute", delta)
            changes = {"temps_impute": new_temps}
        # The new time is known only on the database's clock: the UPDATE itself refuses one out of bounds.
        applied = (
            FicheTemps.objects.filter(pk=fiche_id)
            .alias(new_temps=new_temps)
            .filter(new_temps__gte=timedelta(0), new_temps__lte=conf.fiche_max_total())
            .update(updated_at=Now(), **changes)
        )
        if not applied:
            if delta < timedelta(0):
                raise _below_zero(delta, fiche_id)
            raise too_much(fiche_id)
        fiche = reload(fiche_id)
        log_event(fiche, FicheEvent.Kind.ADJUSTED, actor, delta=delta, reason=reason.strip() + note, applies_to=day)
    return fiche


def update_fiche(
    *, fiche_id: int, actor: Any, libelle: str | None = None, projet_id: int | None = None, owner: Any = None
) -> FicheTemps:
    """
    Change a fiche's label, project or owner (None leaves one as it is) and
    audit what changed; return the fiche. A new project must be active and
    open to the owner; a new owner must be one the project is open to; the
    current project stays valid for its owner even if it was deactivated
    (or restricted to teams) since. Only staff change the owner.
    """
    with transaction.atomic():
        row = locked(fiche_id, actor)
        changes: dict[str, list[Any]] = {}
        if libelle is not None and clean_libelle(libelle) != row["libelle"]:
            changes["libelle"] = [row["libelle"], libelle]
        if projet_id is not None and projet_id != row["projet_id"]:
            changes["projet"] = [row["projet_id"], projet_id]
            if row["etat"] == Etat.EN_CALCUL:  # a running fiche runs on: not onto a used-up stop budget
                budget_marks.refuse_if_exhausted(projet_id)
        if owner is not None and owner.pk != row["owner_id"]:
            if not acts_on_everyones_fiches(actor):
                raise Refused(_("Only staff may give a fiche to someone else."), code=Code.FORBIDDEN)
            changes["owner"] = [row["owner_id"], owner.pk]
        if "projet" in changes or "owner" in changes:
            require_active_projet(
                row["projet_id"] if projet_id is None else projet_id,
                owner=owner if "owner" in changes else _user(row["owner_id"], actor),
                actor=actor,
                active="projet" in changes,
            )
        if not changes:
            return reload(fiche_id)
        note = ""
        if "projet" in changes or "owner" in changes:  # the reports by project and owner would change
            note = locks.guard_history(fiche_id, row["owner_id"], actor)
            if "owner" in changes:
                note += locks.guard_history(fiche_id, owner.pk, actor)
        fields = {"libelle": "libelle", "projet": "projet_id", "owner": "owner_id"}
        extra = {}
        if "owner" in changes and row["etat"] == Etat.EN_CALCUL:
            extra["run_slot"] = _slot_for(owner.pk)  # refused if the new owner runs as many as allowed
        FicheTemps.objects.filter(pk=fiche_id).update(
            updated_at=Now(), **extra, **{fields[name]: new for name, (_old, new) in changes.items()}
        )
        if "owner" in changes:
            _give_stretches(fiche_id, owner.pk)
        fiche = reload(fiche_id)
        log_event(
            fiche,
            FicheEvent.Kind.UPDATED,
            actor,
            changes=changes,
            reason=_describe(changes) + (locks.OVERRIDDEN if note else ""),
        )
    return fiche


def _give_stretches(fiche_id: int, owner_id: int) -> None:
    """Move the fiche's stretches to ``owner_id``'s time, refused as ``overlap`` where it already has time."""
    stretches = list(
        Stretch.objects.filter(fiche_id=fiche_id, exclusive=True).values_list("pk", "started_at", "ended_at")
    )
    ids = [pk for pk, _start, _end in stretches]
    for _pk, start, end in stretches:
        ledger.require_no_overlap(owner_id, start, end, ignoring=ids)
    first = min((start for _pk, start, _end in stretches), default=None)
    if first is None:
        Stretch.objects.filter(fiche_id=fiche_id).update(owner_id=owner_id)
        return
    with ledger.refusing_overlaps(owner_id, first, None, ignoring=ids):
        Stretch.objects.filter(fiche_id=fiche_id).update(owner_id=owner_id)


def _describe(changes: dict[str, list[Any]]) -> str:
    """The changes of an update in words: ``label 'a' → 'b'; owner alice → bob``."""
    names = {
        "projet": lambda pk: str(Projet.objects.filter(pk=pk).first() or pk),
        "owner": lambda pk: str(get_user_model().objects.filter(pk=pk).first() or pk),
        "libelle": repr,
    }
    labels = {"libelle": "label", "projet": "project", "owner": "owner"}
    return "; ".join(f"{labels[name]} {names[name](old)} → {names[name](new)}" for name, (old, new) in changes.items())


acreate_fiche = async_twin(create_fiche)
astart_fiche = async_twin(start_fiche)
aswitch_fiche = async_twin(switch_fiche)
apause_fiche = async_twin(pause_fiche)
afinish_fiche = async_twin(finish_fiche)
aadjust_fiche = async_twin(adjust_fiche)
aupdate_fiche = async_twin(update_fiche)
