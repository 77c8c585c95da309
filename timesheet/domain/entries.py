"""
Time entries: the ledger's stretches as their owner sees and edits them.

An entry is one stretch of a fiche, from its start to its end (none while its
fiche runs); its project and label are its fiche's. People add entries (a
project, a label, a start and an end, or a day and a duration), change an
entry's start or end, split one in two, move one to another project or label,
and delete one; staff with the permission to change fiches do the same for
anyone. Each change is one short transaction that locks the fiche, checks the
rules (the instants, the locked days, no overlap with the owner's other time)
and writes the stretch, the fiche's time and an audit event carrying the
entry's before and after, so that a fiche's ``temps_impute`` stays the sum of
its entries and adjustments to the microsecond, and the sum of its events'
deltas at rest.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import DateTimeField, Value
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from timesheet.core import conf, limits
from timesheet.core.dbtime import DurationSum, db_now, later_of, settled
from timesheet.domain import days, fiches, ledger, locks, reports, selectors
from timesheet.domain.errors import Code, Refused
from timesheet.domain.twins import async_twin
from timesheet.models import Etat, FicheEvent, FicheTemps, Stretch

# Where an entry typed as a day and a duration starts when that day has no time yet.
DAY_STARTS_AT = time(9, 0)


@dataclass(frozen=True)
class Entry:
    """One stretch of a fiche as its owner sees it; ``seconds`` is its length (up to now while it runs)."""

    id: int
    fiche: int
    owner: int
    projet: int
    projet_name: str
    libelle: str
    start: datetime
    end: datetime | None
    seconds: float

    @property
    def running(self) -> bool:
        return self.end is None


@dataclass(frozen=True)
class DayOfWeek:
    """A local day: the entries with time on it (each with its seconds that day) and its total."""

    day: date
    entries: list[tuple[Entry, float]]
    seconds: float


@dataclass(frozen=True)
class Week:
    """A person's week in their zone, Monday first, with its totals up to the database's now."""

    first: date
    last: date
    zone: ZoneInfo
    days: list[DayOfWeek]
    projets: list[tuple[str, float]]
    seconds: float
    running: int
    today: date
    previous: date
    next: date


def _entry(stretch: Stretch, now: datetime) -> Entry:
    fiche = stretch.fiche
    return Entry(
        id=stretch.pk,
        fiche=fiche.pk,
        owner=stretch.owner_id,
        projet=fiche.projet_id,
        projet_name=fiche.projet.designation,
        libelle=fiche.libelle,
        start=stretch.started_at,
        end=stretch.ended_at,
        seconds=ledger.length(stretch.started_at, stretch.ended_at, now).total_seconds(),
    )


def _read(pk: int) -> Entry:
    stretch = Stretch.objects.select_related("fiche__projet").get(pk=pk)
    return _entry(stretch, db_now())


# Reading ---------------------------------------------------------------------------


def entries_between(*, user: Any, start: datetime, end: datetime, owner_id: int | None = None) -> list[Entry]:
    """
    The entries of ``owner_id`` (by default ``user``'s own; someone else's
    only for those who see everyone's fiches) with time in [``start``,
    ``end``), oldest first; a running one counts up to the database's now.
    """
    owner = owner_id if owner_id is not None else user.pk
    selectors.owners_seen_by(user, owner, _("Only staff may see other people's entries."))
    now = db_now()
    stretches = Stretch.objects.filter(owner_id=owner).overlapping(start, end)
    if start >= now:  # a running entry has time up to now only
        stretches = stretches.filter(ended_at__isnull=False)
    return [_entry(stretch, now) for stretch in stretches.select_related("fiche__projet").order_by("started_at", "id")]


def entries_on(*, user: Any, first: date, last: date, owner_id: int | None = None) -> list[Entry]:
    """As ``entries_between``, for the owner's local days ``first`` to ``last`` (at most REPORT_MAX_DAYS)."""
    if not (limits.FIRST_DAY <= first <= limits.LAST_DAY and limits.FIRST_DAY <= last <= limits.LAST_DAY):
        raise Refused(_("Dates lie between the years 2 and 9998."), code=Code.INVALID)
    if first > last:
        raise Refused(_("Check the dates: from must not be after to."), code=Code.INVALID)
    if (last - first).days >= limits.REPORT_MAX_DAYS:
        raise Refused(
            _("At most %(days)s days at a time.") % {"days": limits.REPORT_MAX_DAYS},
            code=Code.INVALID,
        )
    owner = owner_id if owner_id is not None else user.pk
    zone = days.owner_zone(owner)
    start, end = days.local_midnight(first, zone), days.local_midnight(last + timedelta(days=1), zone)
    return entries_between(user=user, start=start, end=end, owner_id=owner)


def week(*, user: Any, day: date | None = None, owner_id: int | None = None) -> Week:
    """
    The owner's week (``user``'s own by default) holding ``day`` (today by
    default) in their zone: each day's entries and total, the totals per
    project and of the week, as the reports count them.
    """
    owner = owner_id if owner_id is not None else user.pk
    selectors.owners_seen_by(user, owner, _("Only staff may see other people's entries."))
    zone = days.owner_zone(owner)
    now = db_now()
    today = days.today(zone, now)
    day = today if day is None else day
    if not limits.FIRST_DAY + timedelta(days=7) <= day <= limits.LAST_DAY - timedelta(days=7):
        raise Refused(_("That week is out of range."), code=Code.INVALID)
    first, last = days.week_of(day)
    bounds = list(days.day_bounds(zone.key, first, last))
    entries = entries_between(user=user, start=bounds[0][1], end=bounds[-1][2], owner_id=owner)
    report = reports.report(first=first, last=last, group="day", by=("projet",), owner_ids=[owner])
    per_day: dict[str, float] = defaultdict(float)
    per_projet: dict[str, float] = defaultdict(float)
    for row in report["rows"]:
        per_day[row["period"]] += row["seconds"]
        per_projet[row["projet"]["designation"]] += row["seconds"]
    week_days = []
    for local_day, start, end in bounds:
        pieces = []
        for entry in entries:
            part = min(entry.end or now, end) - max(entry.start, start)
            if part > timedelta(0) or (entry.running and start <= entry.start < end):
                pieces.append((entry, max(part, timedelta(0)).total_seconds()))
        week_days.append(DayOfWeek(day=local_day, entries=pieces, seconds=per_day[local_day.isoformat()]))
    return Week(
        first=first,
        last=last,
        zone=zone,
        days=week_days,
        projets=sorted(per_projet.items()),
        seconds=report["totals"].get("seconds", 0.0),
        running=FicheTemps.objects.running().filter(owner_id=owner).count(),
        today=today,
        previous=first - timedelta(days=7),
        next=first + timedelta(days=7),
    )


# Writing ---------------------------------------------------------------------------


def _locked_entry(entry_id: int, actor: Any) -> tuple[fiches.Row, Stretch]:
    """
    The entry's fiche (locked, if the actor may change it) and the entry,
    read under that lock; refused as not found when the actor may not see it.
    """
    missing = Refused(_("Entry %(id)s does not exist.") % {"id": entry_id}, code=Code.NOT_FOUND)
    fiche_id = Stretch.objects.filter(pk=entry_id).values_list("fiche_id", flat=True).first()
    if fiche_id is None:
        raise missing
    try:
        row = fiches.locked(fiche_id, actor)
    except Refused as refused:
        raise missing if refused.code == Code.NOT_FOUND else refused from None
    # Read again under the fiche's lock: it may have moved to another fiche meanwhile.
    stretch = Stretch.objects.select_related("fiche__projet").filter(pk=entry_id, fiche_id=fiche_id).first()
    if stretch is None:
        raise missing
    return row, stretch


def _changed_time(fiche_id: int, delta: timedelta) -> None:
    """
    Add ``delta`` to a fiche's stored time (the fiche locked by the caller),
    within its bounds: refused as negative_time when the time before its
    running stretch, if any, would go below zero (a later stop at that
    stretch's start takes the stretch back), as invalid above the most a
    fiche may hold.
    """
    fiche = FicheTemps.objects.values("temps_impute", "compte_jusqua", "en_calcul_depuis").get(pk=fiche_id)
    running_part = timedelta(0)
    if fiche["compte_jusqua"] is not None and fiche["en_calcul_depuis"] is not None:
        running_part = fiche["compte_jusqua"] - fiche["en_calcul_depuis"]
    if fiche["temps_impute"] - running_part + delta < timedelta(0):
        raise Refused(
            _("Fiche %(id)s's time cannot go below zero: an adjustment took some of it back.") % {"id": fiche_id},
            code=Code.NEGATIVE_TIME,
        )
    new_temps = DurationSum("temps_impute", delta)
    applied = (
        FicheTemps.objects.filter(pk=fiche_id)
        .alias(new_temps=new_temps)
        .filter(new_temps__gte=timedelta(0), new_temps__lte=conf.fiche_max_total())
        .update(temps_impute=new_temps, updated_at=Now())
    )
    if not applied:
        raise fiches.too_much(fiche_id)


def _audit(fiche_id: int, kind: str, actor: Any, *, delta: timedelta, changes: dict[str, Any], note: str) -> None:
    """The event of an entry's change: its ``changes`` (each field's before and after) and ``delta``."""
    fiche = fiches.reload(fiche_id)
    reason = "; ".join(f"{name} {old or '—'} → {new or '—'}" for name, (old, new) in changes.items())
    fiches.log_event(fiche, kind, actor, delta=delta, changes=changes, reason=reason + note)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def add_entry(
    *,
    actor: Any,
    projet_id: int,
    libelle: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
    day: date | None = None,
    duration: timedelta | None = None,
    owner_id: int | None = None,
) -> Entry:
    """
    Add a finished entry on an active project for ``owner_id`` (by default
    the actor; someone else only by staff): from ``start`` to ``end``, or
    ``duration`` long on the owner's local ``day``, placed after that day's
    last entry (else at 09:00). It becomes a fiche of its own, finished.
    Return the entry.
    """
    owner = actor.pk if owner_id is None else owner_id
    fiches.check_new_fiche(actor=actor, owner_id=owner, projet_id=projet_id)
    libelle = fiches.clean_libelle(libelle)
    with transaction.atomic():
        now = db_now()
        if start is None and end is None:
            start, end = _placed(owner, day, duration, now)
        elif start is None or end is None:
            raise Refused(_("Give a start and an end, or a day and a duration."), code=Code.INVALID)
        elif day is not None or duration is not None:
            raise Refused(_("Give a start and an end, or a day and a duration, not both."), code=Code.INVALID)
        start = ledger.instant(start, what=_("the start"))
        end = ledger.instant(end, what=_("the end"))
        ledger.require_span(start, end)
        ledger.require_past(end, owner_id=owner, what=_("the end"), now=now)
        note = locks.guard(owner, start, actor, end)
        ledger.require_no_overlap(owner, start, end)
        fiche = fiches.create_fiche(projet_id=projet_id, actor=actor, owner_id=owner, libelle=libelle)
        with ledger.refusing_overlaps(owner, start, end):
            stretch = Stretch.objects.create(
                fiche_id=fiche.pk, owner_id=owner, started_at=start, ended_at=end, exclusive=ledger.exclusive()
            )
        FicheTemps.objects.filter(pk=fiche.pk).update(etat=Etat.TERMINEE, temps_impute=end - start, updated_at=Now())
        changes = {"start": [None, _iso(start)], "end": [None, _iso(end)]}
        _audit(fiche.pk, FicheEvent.Kind.ENTRY_ADDED, actor, delta=end - start, changes=changes, note=note)
    return _read(stretch.pk)


def _placed(owner_id: int, day: date | None, duration: timedelta | None, now: datetime) -> tuple[datetime, datetime]:
    """Where an entry of ``duration`` on the owner's ``day`` goes: after that day's last entry, else at 09:00."""
    if not isinstance(day, date) or not isinstance(duration, timedelta):
        raise Refused(_("Give a start and an end, or a day and a duration."), code=Code.INVALID)
    if not limits.FIRST_DAY < day < limits.LAST_DAY:
        raise Refused(_("The day is out of range."), code=Code.INVALID)
    if not timedelta(0) < duration <= limits.ENTRY_MAX_LENGTH:
        raise Refused(
            _("The duration must be more than zero and at most %(days)s days.")
            % {"days": limits.ENTRY_MAX_LENGTH.days},
            code=Code.INVALID,
        )
    zone = days.owner_zone(owner_id)
    midnight, next_midnight = days.local_midnight(day, zone), days.local_midnight(day + timedelta(days=1), zone)
    if midnight > now:
        raise Refused(_("%(day)s has not come yet.") % {"day": day.isoformat()}, code=Code.INVALID)
    ends = (
        Stretch.objects.filter(owner_id=owner_id)
        .overlapping(midnight, next_midnight)
        .values_list("ended_at", flat=True)
    )
    # The day's last end (now, if an entry still runs), else its morning.
    last_end = max((end or now for end in ends), default=None)
    start = last_end or datetime.combine(day, DAY_STARTS_AT, tzinfo=zone)
    end = (start.astimezone(UTC) + duration).astimezone(zone)  # a duration is of real time, across a DST change too
    if end > min(next_midnight, now):
        raise Refused(
            _("%(duration)s does not fit on %(day)s after its last entry (from %(start)s): give a start and an end.")
            % {"duration": str(duration), "day": day.isoformat(), "start": ledger.local_text(start, zone)},
            code=Code.INVALID,
        )
    return start, end


def change_entry(
    *,
    entry_id: int,
    actor: Any,
    start: datetime | None = None,
    end: datetime | None = None,
    projet_id: int | None = None,
    libelle: str | None = None,
) -> Entry:
    """
    Change an entry's start or end (None leaves one as it is; a running
    entry's end comes when its fiche stops), and its project or label: an
    entry alone on its fiche, or running, changes its fiche's; one among
    several moves to a fiche of its own. Return the entry.
    """
    with transaction.atomic():
        row, stretch = _locked_entry(entry_id, actor)
        if start is not None or end is not None:
            _change_times(row, stretch, actor, start=start, end=end)
            stretch.refresh_from_db(fields=["started_at", "ended_at"])
        if projet_id is not None or libelle is not None:
            _change_fiche(row, stretch, actor, projet_id=projet_id, libelle=libelle)
    return _read(entry_id)


def _change_times(
    row: fiches.Row, stretch: Stretch, actor: Any, *, start: datetime | None, end: datetime | None
) -> None:
    owner = stretch.owner_id
    now = db_now()
    old_start, old_end = stretch.started_at, stretch.ended_at
    new_start = old_start if start is None else ledger.instant(start, what=_("the start"))
    if old_end is None and end is not None:
        raise Refused(
            _("This entry is running: it ends when its fiche is paused or finished (at an earlier time if need be)."),
            code=Code.WRONG_STATE,
        )
    new_end = old_end if end is None else ledger.instant(end, what=_("the end"))
    if (new_start, new_end) == (old_start, old_end):
        return
    if new_end is None:
        ledger.require_running_start(new_start, owner_id=owner, now=now)
    else:
        ledger.require_span(new_start, new_end)
        ledger.require_past(new_end, owner_id=owner, what=_("the end"), now=now)
    # The spans whose time changes, between the old and the new start, and the old and the new end:
    # the time between them, and the locked days and held weeks there, stay as they are.
    spans = [(min(old_start, new_start), max(old_start, new_start))] if new_start != old_start else []
    if new_end != old_end:
        assert old_end is not None and new_end is not None
        spans.append((min(old_end, new_end), max(old_end, new_end)))
    notes = [locks.guard(owner, first, actor, last) for first, last in spans]
    note = locks.OVERRIDDEN if any(notes) else ""
    ledger.require_no_overlap(owner, new_start, new_end, ignoring=[stretch.pk], now=now, fiche_id=row["id"])
    with ledger.refusing_overlaps(owner, new_start, new_end, ignoring=[stretch.pk]):
        # A running stretch started later than it was told about is told again when it crosses anew.
        Stretch.objects.filter(pk=stretch.pk).update(
            started_at=new_start, ended_at=new_end, reminded=stretch.reminded and new_start <= old_start
        )
    changes = {"start": [_iso(old_start), _iso(new_start)], "end": [_iso(old_end), _iso(new_end)]}
    if old_end is None:
        # The running stretch's start is the fiche's mark of it: its time
        # grows by what the start moved back (settled first, so never below zero);
        # its stop will account the whole stretch, so this event adds nothing.
        new_temps = DurationSum(settled(), old_start - new_start)
        applied = (
            FicheTemps.objects.filter(pk=row["id"])
            .alias(new_temps=new_temps)
            .filter(new_temps__lte=conf.fiche_max_total())
            .update(
                temps_impute=new_temps,
                compte_jusqua=later_of("compte_jusqua"),
                en_calcul_depuis=Value(new_start, output_field=DateTimeField()),
                updated_at=Now(),
            )
        )
        if not applied:
            raise fiches.too_much(row["id"])
        delta = timedelta(0)
    else:
        assert new_end is not None
        delta = (new_end - new_start) - (old_end - old_start)
        _changed_time(row["id"], delta)
    _audit(row["id"], FicheEvent.Kind.ENTRY_CHANGED, actor, delta=delta, changes=changes, note=note)


def _change_fiche(row: fiches.Row, stretch: Stretch, actor: Any, *, projet_id: int | None, libelle: str | None) -> None:
    alone = not Stretch.objects.filter(fiche_id=row["id"]).exclude(pk=stretch.pk).exists()
    if alone or stretch.ended_at is None:
        fiches.update_fiche(fiche_id=row["id"], actor=actor, projet_id=projet_id, libelle=libelle)
        return
    new_projet = row["projet_id"] if projet_id is None else projet_id
    new_libelle = row["libelle"] if libelle is None else fiches.clean_libelle(libelle)
    if (new_projet, new_libelle) == (row["projet_id"], row["libelle"]):
        return
    if new_projet == row["projet_id"]:
        # A fiche of its own on the same project: said of that fiche's project, which its owner sees through it.
        fiches.require_projet_of(row, actor)
    # A label is in no report: only a move to another project changes held time.
    note = (
        ""
        if new_projet == row["projet_id"]
        else locks.guard(stretch.owner_id, stretch.started_at, actor, stretch.ended_at)
    )
    length = stretch.ended_at - stretch.started_at
    moved = fiches.create_fiche(projet_id=new_projet, actor=actor, owner_id=stretch.owner_id, libelle=new_libelle)
    Stretch.objects.filter(pk=stretch.pk).update(fiche_id=moved.pk)
    _changed_time(row["id"], -length)
    FicheTemps.objects.filter(pk=moved.pk).update(etat=Etat.TERMINEE, temps_impute=length, updated_at=Now())
    span = {"start": [_iso(stretch.started_at)] * 2, "end": [_iso(stretch.ended_at)] * 2}
    _audit(
        row["id"],
        FicheEvent.Kind.ENTRY_DELETED,
        actor,
        delta=-length,
        changes={**span, "fiche": [row["id"], moved.pk]},
        note=note,
    )
    _audit(
        moved.pk,
        FicheEvent.Kind.ENTRY_ADDED,
        actor,
        delta=length,
        changes={**span, "fiche": [row["id"], moved.pk]},
        note=note,
    )


def split_entry(*, entry_id: int, actor: Any, at: datetime) -> tuple[Entry, Entry]:
    """
    Split a finished entry in two at ``at``, an instant inside it: the same
    fiche and time, in two entries. Return both.
    """
    with transaction.atomic():
        row, stretch = _locked_entry(entry_id, actor)
        if stretch.ended_at is None:
            # Its fiche's run goes on: the auto-stop measures it from its start.
            raise Refused(_("A running entry is split once it ends: stop its fiche first."), code=Code.WRONG_STATE)
        at = ledger.instant(at, what=_("the instant of the split"))
        end = stretch.ended_at
        if not stretch.started_at < at < end:
            zone = days.owner_zone(stretch.owner_id)
            raise Refused(
                _("Split an entry at an instant inside it: after %(start)s and before %(end)s.")
                % {"start": ledger.local_text(stretch.started_at, zone), "end": ledger.local_text(end, zone)},
                code=Code.INVALID,
            )
        Stretch.objects.filter(pk=stretch.pk).update(ended_at=at)
        second = Stretch.objects.create(
            fiche_id=row["id"],
            owner_id=stretch.owner_id,
            started_at=at,
            ended_at=stretch.ended_at,
            exclusive=stretch.exclusive,
        )
        changes = {"start": [_iso(stretch.started_at)] * 2, "end": [_iso(stretch.ended_at), _iso(at)]}
        _audit(row["id"], FicheEvent.Kind.ENTRY_SPLIT, actor, delta=timedelta(0), changes=changes, note="")
    return _read(entry_id), _read(second.pk)


def delete_entry(*, entry_id: int, actor: Any) -> None:
    """
    Delete an entry and its time; deleting a running entry discards the
    running time and leaves its fiche paused.
    """
    with transaction.atomic():
        row, stretch = _locked_entry(entry_id, actor)
        note = locks.guard(stretch.owner_id, stretch.started_at, actor, stretch.ended_at)
        Stretch.objects.filter(pk=stretch.pk).delete()
        if stretch.ended_at is None:
            # What the ticker settled of this stretch goes; earlier stretches' time stays.
            FicheTemps.objects.filter(pk=row["id"]).update(
                etat=Etat.EN_PAUSE,
                temps_impute=row["temps_impute"] - (row["compte_jusqua"] - row["en_calcul_depuis"]),
                compte_jusqua=None,
                en_calcul_depuis=None,
                run_slot=None,
                updated_at=Now(),
            )
            delta = timedelta(0)
            end = db_now()
        else:
            delta = -(stretch.ended_at - stretch.started_at)
            _changed_time(row["id"], delta)
            end = stretch.ended_at
        changes = {"start": [_iso(stretch.started_at), None], "end": [_iso(end), None]}
        _audit(row["id"], FicheEvent.Kind.ENTRY_DELETED, actor, delta=delta, changes=changes, note=note)


def continue_fiche(*, fiche_id: int, actor: Any) -> FicheTemps:
    """
    A new fiche on the same project with the same label as ``fiche_id``,
    running from now, if that project is still open to the owner and
    active; the owner's running fiche is paused at the same instant when
    they may run no more. Return the new fiche.
    """
    with transaction.atomic():
        source = fiches.locked(fiche_id, actor, with_projet=True)
        fiches.require_projet_of(source, actor)
        fiche = fiches.create_fiche(
            projet_id=source["projet_id"], actor=actor, owner_id=source["owner_id"], libelle=source["libelle"]
        )
        try:
            return fiches.start_fiche(fiche_id=fiche.pk, actor=actor)
        except Refused as refused:
            if refused.code != Code.LIMIT_REACHED or refused.running_fiche_id is None:
                raise
            return fiches.switch_fiche(from_id=refused.running_fiche_id, to_id=fiche.pk, actor=actor)[1]


aentries_on = async_twin(entries_on)
aweek = async_twin(week)
aadd_entry = async_twin(add_entry)
achange_entry = async_twin(change_entry)
asplit_entry = async_twin(split_entry)
adelete_entry = async_twin(delete_entry)
acontinue_fiche = async_twin(continue_fiche)
