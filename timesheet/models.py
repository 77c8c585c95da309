import functools
from datetime import time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce, Now
from django.utils.translation import gettext_lazy as _

from timesheet.core import limits
from timesheet.core.dbtime import settled
from timesheet.core.prepared import Prepared
from timesheet.core.xact import CurrentTransaction


class Rounding(models.TextChoices):
    NONE = "none", _("none")
    UP = "up", _("up")
    DOWN = "down", _("down")
    NEAREST = "nearest", _("nearest")


class Client(models.Model):
    """Whom projects are done for: reports, exports and budgets group their projects by it."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    actif = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("client")
        verbose_name_plural = _("clients")

    def __str__(self):
        return self.name


class Team(models.Model):
    """
    People who work together: a project restricted to teams is seen and
    charged to by their members only; leads receive their projects' budget
    alerts.
    """

    name = models.CharField(_("name"), max_length=200, unique=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMembership", related_name="teams", verbose_name=_("members")
    )
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("team")
        verbose_name_plural = _("teams")

    def __str__(self):
        return self.name


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("team"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships", verbose_name=_("person")
    )
    lead = models.BooleanField(
        _("lead"), default=False, help_text=_("Receives the budget alerts of the team's projects.")
    )

    class Meta:
        ordering = ["team", "-lead", "user"]
        verbose_name = _("team member")
        verbose_name_plural = _("team members")
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="team_membership_once")]
        indexes = [models.Index(fields=["user", "team"], name="team_membership_user_idx")]

    def __str__(self):
        return f"{self.user} ∈ {self.team}"


class ProjetQuerySet(models.QuerySet["Projet"]):
    def open_to(self, user: Any) -> "ProjetQuerySet":
        """
        The projects ``user`` may see and charge time to, active or not: those
        restricted to no team, and those of ``user``'s teams. The one rule of
        team restrictions.
        """
        if not user.is_authenticated or not user.is_active:
            return self.none()
        restricted = Projet.teams.through.objects.filter(projet_id=OuterRef("pk"))
        return self.filter(~Exists(restricted) | Exists(restricted.filter(team__memberships__user=user.pk)))

    def usable_by(self, user: Any) -> "ProjetQuerySet":
        """The projects ``user`` may charge time to: the active ones open to them."""
        return self.open_to(user).filter(actif=True)

    def seen_by(self, user: Any) -> "ProjetQuerySet":
        """The projects ``user`` may see: all of them for those who see everyone's fiches, else those open to them."""
        return self if sees_everyones_fiches(user) else self.open_to(user)


class Projet(models.Model):
    designation = models.CharField(_("designation"), max_length=200, unique=True)
    actif = models.BooleanField(_("active"), default=True)
    rounding = models.CharField(
        _("rounding"),
        max_length=10,
        choices=Rounding.choices,
        blank=True,
        help_text=_("How reports round this project's time; empty for the default (REPORT_ROUNDING)."),
    )
    rounding_step_minutes = models.PositiveSmallIntegerField(
        _("rounding step (minutes)"),
        null=True,
        blank=True,
        help_text=_("Empty for the default (REPORT_ROUNDING_STEP_MINUTES)."),
    )
    client = models.ForeignKey(
        Client, on_delete=models.PROTECT, null=True, blank=True, related_name="projets", verbose_name=_("client")
    )
    billable = models.BooleanField(_("billable"), default=True, help_text=_("Its time is priced at the hourly rates."))
    teams = models.ManyToManyField(
        Team,
        blank=True,
        related_name="projets",
        verbose_name=_("teams"),
        help_text=_("Only these teams' members see it and charge time to it; none for everyone."),
    )
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)
    updated_at = models.DateTimeField(_("updated"), db_default=Now(), editable=False)

    objects = ProjetQuerySet.as_manager()

    class Meta:
        ordering = ["designation"]
        verbose_name = _("project")
        verbose_name_plural = _("projects")

    def __str__(self):
        return self.designation


class Etat(models.TextChoices):
    EN_CALCUL = "en_calcul", _("running")
    EN_PAUSE = "en_pause", _("paused")
    TERMINEE = "terminee", _("finished")


# The admin's permissions on fiches that give powers over everyone's.
SEEING_EVERYONES = ("view_fichetemps", "change_fichetemps")
ACTING_ON_EVERYONES = ("change_fichetemps",)


@functools.cache  # built once, never evaluated itself: every use filters a copy
def _granted(codenames: tuple):
    return Permission.objects.filter(content_type__app_label="timesheet", codename__in=codenames).order_by()


def users_holding(codenames: tuple) -> Q:
    """
    A filter on users: the active ones who are superusers or were granted one
    of the fiche permissions ``codenames`` (a tuple), themselves or through a
    group.
    """
    granted = _granted(codenames)
    # One semi-join per way of holding it: an OR over both joins would pair every holder with every group member.
    return Q(is_active=True) & (
        Q(is_superuser=True)
        | Exists(granted.filter(user=OuterRef("pk")))
        | Exists(granted.filter(group__user=OuterRef("pk")))
    )


def _holds(user, codenames) -> bool:
    """
    Whether ``user`` is one of ``users_holding(codenames)``: one query (each
    way of holding looked up by the user), remembered on ``user``.
    """
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    held = getattr(user, "_fiche_powers", None)
    if held is None:
        held = user._fiche_powers = {}
    if codenames not in held:
        held[codenames] = bool(_holding(codenames).rows(user=user.pk, limit=1))
    return held[codenames]


@functools.cache
def _holding(codenames: tuple) -> Prepared:
    """The read of ``_holds``: one of ``codenames`` granted to the user, themselves or through a group."""

    def build(user):
        granted = _granted(codenames)
        own, through_groups = granted.filter(user=user).values("pk"), granted.filter(group__user=user).values("pk")
        return own.union(through_groups, all=True).order_by()  # the model's ordering names no selected column

    return Prepared(build, "user")


def visible_row(user: Any, own: Prepared, everyones: Prepared, **values: Any) -> dict[str, Any] | None:
    """
    ``FicheTemps.objects.get_visible_to`` for two prepared reads of one fiche
    (``values`` and ``user``, the person's id, in their places): ``own``, among
    ``user``'s own fiches, first (most ask for theirs, and that reads no
    permission), then ``everyones`` if they see everyone's. The row, or None.
    """
    if not (user.is_authenticated and user.is_active):
        return None
    row = own.one(user=user.pk, **values)
    if row is None and sees_everyones_fiches(user):
        row = everyones.one(user=user.pk, **values)
    return row


def stand_in(user: int) -> Any:
    """
    ``user``, a prepared read's marker for a person's id, made to stand in
    for an active person who does not see everyone's fiches: the query rules
    (``owned_by``, ``visible_to``, ``open_to``) then write their own filters
    into a read prepared once (see ``timesheet.core.prepared``). Asking it
    for any other power fails, as a marker is no id to run a read with.
    """
    person: Any = user
    person.pk = person.id = user
    person.is_authenticated = person.is_active = True
    person.is_superuser = False
    person._fiche_powers = {SEEING_EVERYONES: False}
    return person


def sees_everyones_fiches(user) -> bool:
    """
    The one rule for seeing everyone's fiches in the API, the stream and
    reports: the admin's permission to view or change them, read from
    Django's permission tables (which the admin grants), not through other
    authentication backends.
    """
    return _holds(user, SEEING_EVERYONES)


def acts_on_everyones_fiches(user) -> bool:
    """The rule for changing everyone's fiches: the admin's permission to change them, read as above."""
    return _holds(user, ACTING_ON_EVERYONES)


class FicheTempsQuerySet(models.QuerySet["FicheTemps"]):
    """The query rules every reader of fiches shares: the API, the stream, the admin, the ticker and reports."""

    def running(self) -> "FicheTempsQuerySet":
        """The fiches that are accruing time."""
        return self.filter(etat=Etat.EN_CALCUL)

    def owned_by(self, user: Any) -> "FicheTempsQuerySet":
        """``user``'s own fiches, if they may see any: the part of ``visible_to`` that reads no permissions."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        return self.filter(owner=user)

    def visible_to(self, user: Any) -> "FicheTempsQuerySet":
        """The fiches ``user`` may see: everyone's with the admin's permission to view fiches, else their own."""
        return self if sees_everyones_fiches(user) else self.owned_by(user)

    def get_visible_to(self, user: Any, **lookups: Any) -> Any:
        """
        The fiche matching ``lookups`` that ``user`` may see (else DoesNotExist),
        looked for among their own first, as most requests are: that reads none
        of their permissions (and, with select_for_update, locks no one else's).
        """
        try:
            return self.owned_by(user).get(**lookups)
        except FicheTemps.DoesNotExist:
            return self.visible_to(user).get(**lookups)

    def with_live_time(self) -> "FicheTempsQuerySet":
        """
        Annotate ``temps_live`` (the stored time plus the running part not yet
        settled) and ``db_now`` (the instant it was computed for), both from the
        database's clock in the same query.
        """
        return self.annotate(
            temps_live=models.Case(models.When(etat=Etat.EN_CALCUL, then=settled()), default=models.F("temps_impute")),
            db_now=Now(),
        )


class FicheTemps(models.Model):
    """
    A time sheet entry. While running, its time is accounted up to
    ``compte_jusqua`` (a database instant) and the rest is still to be settled:
    live time = ``temps_impute`` + (database now - ``compte_jusqua``).
    """

    projet = models.ForeignKey(Projet, on_delete=models.PROTECT, related_name="fiches", verbose_name=_("project"))
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="fiches", verbose_name=_("owner")
    )
    libelle = models.CharField(_("label"), max_length=limits.LABEL_MAX_LENGTH, blank=True)
    etat = models.CharField(_("state"), max_length=10, choices=Etat.choices, default=Etat.EN_PAUSE)
    temps_impute = models.DurationField(_("time charged"), default=timedelta(0))
    # The hot columns: rewritten by every tick, so deliberately not indexed
    # (an index on them would make every PostgreSQL update a non-HOT one).
    compte_jusqua = models.DateTimeField(_("accounted up to"), null=True, blank=True, editable=False)
    en_calcul_depuis = models.DateTimeField(_("running since"), null=True, blank=True, editable=False)
    auto_stopped = models.BooleanField(_("auto-stopped"), default=False)
    # While running: which of its owner's FICHE_MAX_RUNNING_PER_OWNER slots it
    # holds (None when there is no limit). Unique per owner among running
    # fiches, so the database itself refuses one fiche too many.
    run_slot = models.PositiveSmallIntegerField(_("running slot"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)
    updated_at = models.DateTimeField(_("updated"), db_default=Now(), editable=False)

    objects = FicheTempsQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("time sheet")
        verbose_name_plural = _("time sheets")
        permissions = [
            ("override_lock", _("Can change time in locked periods")),
            ("adjust_fichetemps", _("Can adjust a fiche's time")),
        ]
        indexes = [
            # Small and cold: only running rows, keyed by id, which ticks never change.
            models.Index(fields=["id"], condition=Q(etat=Etat.EN_CALCUL), name="fiche_running_idx"),
            # The lists' order, for one owner and for everyone: a page is read
            # from the index's start instead of sorting every row first.
            models.Index(fields=["owner", "-created_at", "-id"], name="fiche_owner_recent_idx"),
            models.Index(fields=["-created_at", "-id"], name="fiche_recent_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(etat=Etat.EN_CALCUL, compte_jusqua__isnull=False, en_calcul_depuis__isnull=False)
                | (~Q(etat=Etat.EN_CALCUL) & Q(compte_jusqua__isnull=True, en_calcul_depuis__isnull=True)),
                name="fiche_running_iff_marked",
                violation_error_message=_("A fiche has an accounting mark exactly while it is running."),
            ),
            models.CheckConstraint(
                condition=Q(temps_impute__gte=timedelta(0)),
                name="fiche_temps_impute_not_negative",
                violation_error_message=_("The time charged cannot be negative."),
            ),
            models.CheckConstraint(
                # On SQLite a sum past 64 bits silently becomes a float: refused here instead, far below that.
                condition=Q(temps_impute__lte=limits.STORED_TIME_MAX),
                name="fiche_temps_impute_bounded",
                violation_error_message=_("The time charged is beyond what a fiche may hold."),
            ),
            models.CheckConstraint(
                condition=Q(etat__in=Etat.values),
                name="fiche_etat_valid",
            ),
            models.CheckConstraint(
                condition=Q(etat=Etat.EN_CALCUL) | Q(run_slot__isnull=True),
                name="fiche_slot_only_while_running",
            ),
            models.UniqueConstraint(
                fields=["owner", "run_slot"],
                condition=Q(etat=Etat.EN_CALCUL),
                name="fiche_one_running_per_owner_slot",
                violation_error_message=_("This owner already runs as many fiches as allowed."),
            ),
        ]

    def __str__(self):
        return self.libelle or f"{self.projet} #{self.pk}"

    @property
    def is_running(self) -> bool:
        return self.etat == Etat.EN_CALCUL


class FicheEvent(models.Model):
    """
    The audit trail: one row per transition or adjustment.

    ``delta`` is the time the event accounts for: a stopped stretch's length
    for pause, finish and auto-stop, the correction for an adjustment, the
    change of time for an entry's edit, zero otherwise. The sum of the deltas
    is the fiche's settled time. For an entry's edit, ``changes`` holds the
    entry's start and end before and after.
    """

    class Kind(models.TextChoices):
        CREATED = "created", _("created")
        STARTED = "started", _("started")
        PAUSED = "paused", _("paused")
        FINISHED = "finished", _("finished")
        AUTO_STOPPED = "auto_stopped", _("auto-stopped")
        ADJUSTED = "adjusted", _("adjusted")
        UPDATED = "updated", _("updated")
        ENTRY_ADDED = "entry_added", _("entry added")
        ENTRY_CHANGED = "entry_changed", _("entry changed")
        ENTRY_SPLIT = "entry_split", _("entry split")
        ENTRY_DELETED = "entry_deleted", _("entry deleted")

    fiche = models.ForeignKey(FicheTemps, on_delete=models.CASCADE, related_name="events", verbose_name=_("fiche"))
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("actor"),
        help_text=_("Empty when the ticker acted."),
    )
    at = models.DateTimeField(_("at"), help_text=_("The instant the event took effect."))
    recorded_at = models.DateTimeField(
        _("recorded"),
        db_default=Now(),
        editable=False,
        help_text=_("When it was entered: later than 'at' for a stop at an earlier instant."),
    )
    delta = models.DurationField(_("delta"), default=timedelta(0))
    temps_impute = models.DurationField(_("time charged after"))
    reason = models.TextField(_("reason"), blank=True)
    applies_to = models.DateField(
        _("applies to"), null=True, blank=True, help_text=_("For an adjustment: the owner's local day it counts on.")
    )
    changes = models.JSONField(
        _("changes"),
        default=dict,
        blank=True,
        help_text=_("For an update or an entry's edit: each changed field's old and new value."),
    )
    # The writing transaction's id (timesheet.core.xact): readers follow the log in
    # (txid, id) order, up to a horizon below which every writer has ended.
    txid = models.BigIntegerField(_("transaction"), db_default=CurrentTransaction(), editable=False)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["txid", "id"], name="ficheevent_log_order"),
            # The adjustments of a range of days, which every report reads.
            models.Index(fields=["applies_to"], condition=Q(kind="adjusted"), name="ficheevent_adjusted_day_idx"),
        ]
        verbose_name = _("fiche event")
        verbose_name_plural = _("fiche events")

    def __str__(self):
        return f"{self.get_kind_display()} {self.fiche_id} @ {self.at:%Y-%m-%d %H:%M:%S}"


class StretchQuerySet(models.QuerySet["Stretch"]):
    """The ledger's reads that entries share: the page, the API and the rules that refuse overlaps."""

    def overlapping(self, start: Any, end: Any) -> "StretchQuerySet":
        """
        The stretches with time in [``start``, ``end``) (``end`` None: up to
        any time), an open one counted as running on forever.
        """
        # An empty stretch (a stop at its very start) holds no instant: it overlaps nothing.
        ends_after = Q(ended_at__isnull=True) | (Q(ended_at__gt=start) & ~Q(ended_at=models.F("started_at")))
        return self.filter(ends_after) if end is None else self.filter(ends_after, started_at__lt=end)


class Stretch(models.Model):
    """
    The ledger: one row per running stretch of a fiche, from its start to its
    stop on the database's clock (open while the fiche runs). A fiche's time
    is the sum of its stretches and its adjustments; reports split stretches
    at days' boundaries. People see and edit their stretches as their time
    entries (``timesheet.domain.entries``).
    """

    fiche = models.ForeignKey(FicheTemps, on_delete=models.CASCADE, related_name="stretches", verbose_name=_("fiche"))
    # The fiche's owner, kept here so that the database can compare one
    # person's stretches with each other (on PostgreSQL, an exclusion
    # constraint over their time ranges refuses an overlap).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("owner")
    )
    started_at = models.DateTimeField(_("started"))
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    # Whether it may not overlap its owner's other exclusive stretches: true
    # when it was written while each person ran one fiche at a time (the
    # default); with more, a person's stretches may overlap.
    exclusive = models.BooleanField(_("exclusive"), default=True)
    # Whether the forgotten-timer reminder was written for it: once it is, the
    # reminders' pass no longer reads it (its index holds only those not yet told).
    reminded = models.BooleanField(_("reminded"), default=False, db_default=False)

    objects = StretchQuerySet.as_manager()

    class Meta:
        ordering = ["started_at", "id"]
        verbose_name = _("stretch")
        verbose_name_plural = _("stretches")
        indexes = [
            models.Index(fields=["started_at"], name="stretch_started_idx"),
            # A person's entries in a range, and the overlap check; with each one's end,
            # so that a person's report reads its stretches from the index alone.
            models.Index(fields=["owner", "started_at", "ended_at"], name="stretch_owner_started_idx"),
            # The running stretches no reminder has been written for yet: small, read every reminders' pass.
            models.Index(
                fields=["started_at"], condition=Q(ended_at__isnull=True, reminded=False), name="stretch_unreminded_idx"
            ),
        ]
        # On PostgreSQL, migration 0011 adds the exclusion constraint
        # ``stretch_no_overlap`` (btree_gist): no two exclusive stretches of an
        # owner share an instant. It is not declared here because SQLite has
        # no such constraint: there the rules check it inside the same
        # serialised (IMMEDIATE) transaction as the write.
        constraints = [
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
                name="stretch_ends_after_it_starts",
            ),
            models.UniqueConstraint(
                fields=["fiche"], condition=Q(ended_at__isnull=True), name="stretch_one_open_per_fiche"
            ),
        ]

    def __str__(self):
        return f"{self.fiche_id}: {self.started_at:%Y-%m-%d %H:%M:%S} → {self.ended_at or '…'}"


class Weekday(models.IntegerChoices):
    """ISO weekdays."""

    MONDAY = 1, _("Monday")
    TUESDAY = 2, _("Tuesday")
    WEDNESDAY = 3, _("Wednesday")
    THURSDAY = 4, _("Thursday")
    FRIDAY = 5, _("Friday")
    SATURDAY = 6, _("Saturday")
    SUNDAY = 7, _("Sunday")


def default_end_of_day() -> time:
    return time(19, 0)


class Profile(models.Model):
    """
    What the product knows of a person beyond Django's user: the time zone
    their days are counted in, their language, and their reminders' settings.
    A person without a profile has the site's defaults.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="timesheet_profile", verbose_name=_("user")
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        help_text=_("An IANA name such as Europe/Paris; empty for the site's."),
    )
    language = models.CharField(
        _("language"), max_length=8, blank=True, help_text=_("Of the emails sent to them; empty for the site's.")
    )
    reminder_running_hours = models.DecimalField(
        _("forgotten timer after (hours)"),
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text=_("Empty for the site's (REMINDER_RUNNING_HOURS); 0 for no reminder."),
    )
    end_of_day = models.TimeField(
        _("end of the working day"),
        null=True,
        blank=True,
        default=default_end_of_day,
        help_text=_("Told if a fiche still runs then; empty for no reminder."),
    )
    # ISO weekdays, Monday 1 to Sunday 7.
    working_days = models.CharField(_("working days"), max_length=7, default="12345")
    week_start = models.PositiveSmallIntegerField(
        _("first day of the week"),
        choices=Weekday.choices,
        default=Weekday.MONDAY,
        help_text=_("The day the person's weeks begin on, for their weekly time sheets."),
    )

    class Meta:
        verbose_name = _("profile")
        verbose_name_plural = _("profiles")
        constraints = [
            models.CheckConstraint(condition=Q(week_start__gte=1, week_start__lte=7), name="profile_week_start_valid"),
        ]

    def __str__(self):
        return f"{self.user} ({self.time_zone or settings.TIME_ZONE})"


class LockedPeriod(models.Model):
    """Every day up to ``until`` (in the owner's time zone) is locked: its time never changes again."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("whose days"),
        help_text=_("Empty for everyone's."),
    )
    until = models.DateField(_("locked up to and including"))
    reason = models.CharField(_("reason"), max_length=limits.LOCK_REASON_MAX_LENGTH, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("locked by")
    )
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)

    class Meta:
        ordering = ["-until", "-id"]
        verbose_name = _("locked period")
        verbose_name_plural = _("locked periods")

    def __str__(self):
        return f"≤ {self.until} ({self.owner or _('everyone')})"


# The permissions of approvers: of anyone's week, and of one's own.
APPROVING = ("approve_weeksheet",)
APPROVING_OWN = ("approve_own_weeksheet",)


def approves_everyones(user: Any) -> bool:
    """Whether ``user`` approves anyone's week: the permission to, read as the fiche permissions are."""
    return _holds(user, APPROVING)


def members_led_by(user: Any) -> "models.QuerySet[TeamMembership]":
    """The memberships of the teams ``user`` leads (theirs among them): whose weeks a lead sees and decides."""
    return TeamMembership.objects.filter(team__memberships__user=user.pk, team__memberships__lead=True)


class WeekSheetQuerySet(models.QuerySet["WeekSheet"]):
    """The one home of who sees and decides a week: its owner, the leads of their teams, and approvers."""

    def visible_to(self, user: Any) -> "WeekSheetQuerySet":
        """The weeks ``user`` may see: their own, their teams' members' if they lead, everyone's for approvers."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if approves_everyones(user) or sees_everyones_fiches(user):
            return self
        led = members_led_by(user).filter(user_id=OuterRef("owner_id"))
        return self.filter(Q(owner_id=user.pk) | Exists(led))

    def decidable_by(self, user: Any) -> "WeekSheetQuerySet":
        """
        The weeks ``user`` may approve or reject: their teams' members' if they
        lead, everyone's with the permission to approve; their own only with
        the permission to approve one's own.
        """
        if not user.is_authenticated or not user.is_active:
            return self.none()
        own = _holds(user, APPROVING_OWN)
        if approves_everyones(user):
            return self if own else self.exclude(owner_id=user.pk)
        theirs = self.filter(Exists(members_led_by(user).filter(user_id=OuterRef("owner_id"))))
        return theirs if own else theirs.exclude(owner_id=user.pk)


class WeekSheet(models.Model):
    """
    A person's weekly time sheet once it was first submitted: their week
    (``first_day`` and the six days after it, local to ``time_zone``; the
    instants ``starts_at`` to ``ends_at``) and its state. Without a row, a
    week is open. While submitted, its time cannot change (``submitted``);
    once approved it is locked for its owner as locked days are, empty days
    included; rejected, it is open again with the reason.
    """

    class State(models.TextChoices):
        OPEN = "open", _("open")
        SUBMITTED = "submitted", _("submitted")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="week_sheets", verbose_name=_("person")
    )
    # ISO year and week of the week's first days: "2026-W49".
    week = models.CharField(_("week"), max_length=8)
    first_day = models.DateField(_("first day"))
    time_zone = models.CharField(_("time zone"), max_length=64)
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.OPEN)
    # How many times it was submitted: each submission is told once.
    submissions = models.PositiveIntegerField(_("submissions"), default=0)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    microseconds = models.BigIntegerField(_("time submitted (µs)"), default=0)
    # What the week held when it was submitted, and at its submission before: {"days": {...}, "projets": {...}}.
    totals = models.JSONField(_("totals submitted"), default=dict, blank=True)
    previous_totals = models.JSONField(_("totals of the previous submission"), null=True, blank=True)
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    reason = models.TextField(_("reason"), blank=True)
    # Each submission, withdrawal and decision: [{"state", "at", "by", "reason"}].
    history = models.JSONField(_("history"), default=list, blank=True)
    # Set once the ticker has split the fiches still running across the end of the approved week.
    closed_at = models.DateTimeField(_("running fiches split"), null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(_("updated"), db_default=Now())

    objects = WeekSheetQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_at", "owner_id"]
        verbose_name = _("weekly time sheet")
        verbose_name_plural = _("weekly time sheets")
        permissions = [
            ("approve_weeksheet", _("Can approve or reject anyone's week")),
            ("approve_own_weeksheet", _("Can approve one's own week")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["owner", "week"], name="week_sheet_once"),
            models.CheckConstraint(
                condition=Q(state__in=["open", "submitted", "approved", "rejected"]), name="week_sheet_state_valid"
            ),
            models.CheckConstraint(condition=Q(starts_at__lt=F("ends_at")), name="week_sheet_span"),
        ]
        indexes = [
            # The guard of every change: the owner's weeks that hold their time.
            models.Index(
                fields=["owner", "ends_at"],
                condition=Q(state__in=["submitted", "approved"]),
                name="week_sheet_held_idx",
            ),
            models.Index(fields=["submitted_at"], condition=Q(state="submitted"), name="week_sheet_waiting_idx"),
            models.Index(
                fields=["ends_at"],
                condition=Q(state="approved", closed_at__isnull=True),
                name="week_sheet_to_close_idx",
            ),
        ]

    def __str__(self):
        return f"{self.owner} {self.week} ({self.get_state_display()})"


class TickerHeartbeat(models.Model):
    """One row per ticker process, refreshed after every tick."""

    host = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("pid"))
    started_at = models.DateTimeField(_("started"), db_default=Now())
    interval = models.DurationField(_("interval"))
    last_tick_at = models.DateTimeField(_("last tick"), null=True, blank=True)
    ticks = models.PositiveBigIntegerField(_("ticks"), default=0)
    last_rows = models.PositiveIntegerField(_("rows in last tick"), default=0)
    last_duration = models.DurationField(_("last tick's duration"), null=True, blank=True)
    failures = models.PositiveBigIntegerField(_("failed ticks"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    stopped_at = models.DateTimeField(_("stopped"), null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = _("ticker heartbeat")
        verbose_name_plural = _("ticker heartbeats")

    def __str__(self):
        return f"{self.host}:{self.pid}"


class ApiTokenQuerySet(models.QuerySet):
    def usable(self):
        """Tokens that authenticate now: not revoked, not expired, their user active."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=Now(), user__is_active=True)


class ApiToken(models.Model):
    """
    A personal API token, for scripts and integrations (``Authorization: Bearer``).

    Only its SHA-256 is stored: the token itself is shown once, at creation.
    ``prefix`` finds the row; the hash is compared in constant time.
    """

    class Scope(models.TextChoices):
        READ = "read", _("read")
        WRITE = "write", _("read and write")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user")
    )
    name = models.CharField(_("name"), max_length=limits.TOKEN_NAME_MAX_LENGTH)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(_("key hash"), max_length=64, editable=False)
    scope = models.CharField(_("scope"), max_length=10, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)
    expires_at = models.DateTimeField(_("expires"))
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        constraints = [
            models.CheckConstraint(condition=Q(scope__in=["read", "write"]), name="api_token_scope_valid"),
        ]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


class WebhookSubscription(models.Model):
    """
    Where to POST the fiche events of the event log, in order, signed.

    ``cursor_txid`` and ``cursor`` are the transaction id and id of the last
    event delivered: the next delivery is the first matching event after it
    in the log's order (timesheet.core.xact). A delivery worker holds the lease
    (``lease_owner`` until ``leased_until``) while it delivers, so that any
    number of workers deliver each subscription's events one at a time.
    """

    name = models.CharField(_("name"), max_length=100)
    url = models.URLField(_("URL"), max_length=limits.WEBHOOK_URL_MAX_LENGTH)
    secret = models.CharField(_("secret"), max_length=200, help_text=_("Signs each delivery (HMAC-SHA256)."))
    kinds = models.JSONField(_("event kinds"), default=list, blank=True, help_text=_("Empty for every kind of event."))
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("whose fiches"),
        help_text=_("Empty for everyone's."),
    )
    active = models.BooleanField(_("active"), default=True)
    cursor = models.BigIntegerField(_("last event delivered"), default=0)
    cursor_txid = models.BigIntegerField(_("its transaction"), default=0, editable=False)
    next_attempt_at = models.DateTimeField(_("next attempt"), db_default=Now())
    attempts = models.PositiveIntegerField(_("failed attempts in a row"), default=0)
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    disabled_reason = models.TextField(_("why it was disabled"), blank=True)
    leased_until = models.DateTimeField(_("leased until"), null=True, blank=True, editable=False)
    lease_owner = models.CharField(_("leased by"), max_length=32, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("webhook subscription")
        verbose_name_plural = _("webhook subscriptions")

    def __str__(self):
        return self.name


class WebhookDelivery(models.Model):
    """One attempt to deliver one event to one subscription: the delivery log."""

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("subscription")
    )
    event = models.ForeignKey(FicheEvent, on_delete=models.CASCADE, related_name="+", verbose_name=_("event"))
    attempt = models.PositiveIntegerField(_("attempt"))
    at = models.DateTimeField(_("at"), db_default=Now())
    status_code = models.PositiveIntegerField(_("HTTP status"), null=True, blank=True)
    ok = models.BooleanField(_("delivered"))
    duration = models.DurationField(_("duration"))
    error = models.TextField(_("error"), blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")

    def __str__(self):
        return f"{self.subscription} #{self.event_id} ({self.attempt})"


class NotificationKind(models.TextChoices):
    FORGOTTEN_TIMER = "forgotten_timer", _("forgotten timer")
    END_OF_DAY = "end_of_day", _("still running at the end of the day")
    MISSING_TIME = "missing_time", _("days without time")
    BUDGET_CROSSED = "budget.crossed", _("a budget's threshold crossed")
    WEEK_SUBMITTED = "week.submitted", _("a week submitted for approval")
    WEEK_APPROVED = "week.approved", _("a week approved")
    WEEK_REJECTED = "week.rejected", _("a week rejected")
    WEEK_NOT_SUBMITTED = "week.not_submitted", _("a week not submitted")
    WEEK_WAITING = "week.waiting", _("weeks waiting for a decision")


class Channel(models.TextChoices):
    EMAIL = "email", _("email")
    PAGE = "page", _("the page")
    WEBHOOK = "webhook", _("webhooks")


class NotificationQuerySet(models.QuerySet["Notification"]):
    def visible_to(self, user: Any) -> "NotificationQuerySet":
        """The notifications ``user`` may see and act on: their own."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        return self.filter(recipient_id=user.pk)

    def unread(self) -> "NotificationQuerySet":
        return self.filter(read_at__isnull=True)


class Notification(models.Model):
    """
    The outbox: one row per occurrence of a fact someone is told about,
    written by the same transaction as the fact (or as the pass that found
    it). ``(kind, subject, occurrence, recipient)`` is unique, so any number
    of writers, restarts and kills make each one once. ``occurred_at`` is the
    exact instant of the fact (a threshold's crossing, computed), not when it
    was noticed. The delivery worker fans it out to its channels
    (``fanned_out``) and delivers each in ``NotificationDelivery``.
    """

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications", verbose_name=_("recipient")
    )
    kind = models.CharField(_("kind"), max_length=32, choices=NotificationKind.choices)
    # What it is about ("stretch:12", "fiche:3", "owner:5") and which occurrence ("2026-12-07", "2026-W49", "").
    subject = models.CharField(_("subject"), max_length=64)
    occurrence = models.CharField(_("occurrence"), max_length=32, blank=True)
    fiche = models.ForeignKey(
        FicheTemps, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("fiche")
    )
    occurred_at = models.DateTimeField(_("occurred"))
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)
    read_at = models.DateTimeField(_("read"), null=True, blank=True)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    fanned_out = models.BooleanField(_("handed to its channels"), default=False, db_default=False)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject", "occurrence", "recipient"], name="notification_once_per_occurrence"
            ),
            models.CheckConstraint(condition=Q(kind__in=NotificationKind.values), name="notification_kind_valid"),
        ]
        indexes = [
            models.Index(fields=["recipient", "-occurred_at", "-id"], name="notification_recipient_idx"),
            models.Index(fields=["id"], condition=Q(fanned_out=False), name="notification_to_fan_out_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} → {self.recipient} ({self.occurred_at:%Y-%m-%d %H:%M})"


class NotificationPreference(models.Model):
    """A person's choice for one kind on one channel; without a row, the kind goes to every channel."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    kind = models.CharField(_("kind"), max_length=32, choices=NotificationKind.choices)
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("notification preference")
        verbose_name_plural = _("notification preferences")
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "channel"], name="notification_preference_unique"),
        ]

    def __str__(self):
        return f"{self.user}: {self.kind} by {self.channel} {'on' if self.enabled else 'off'}"


class NotificationDelivery(models.Model):
    """
    One notification on one channel that sends (email, webhook): its state,
    attempts and lease. A worker holds the lease (``lease_owner`` until
    ``leased_until``) while it sends, so any number of workers send each one
    once; a worker killed mid-send leaves the lease to expire and another
    sends it again (at least once, deduplicated by the receiver by its id).
    """

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed: gave up")

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("notification")
    )
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    # For a webhook: which subscription (a notification goes to each subscription that chose its kind).
    subscription = models.ForeignKey(
        WebhookSubscription,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("subscription"),
    )
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), db_default=Now())
    leased_until = models.DateTimeField(_("leased until"), null=True, blank=True, editable=False)
    lease_owner = models.CharField(_("leased by"), max_length=32, blank=True, editable=False)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("notification delivery")
        verbose_name_plural = _("notification deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "channel"],
                condition=Q(subscription__isnull=True),
                name="notification_delivery_once",
            ),
            models.UniqueConstraint(
                fields=["notification", "subscription"],
                condition=Q(subscription__isnull=False),
                name="notification_delivery_once_per_subscription",
            ),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(state="pending"), name="notification_due_idx"),
        ]

    def __str__(self):
        return f"{self.notification_id} by {self.channel} ({self.state})"


class ReminderMark(models.Model):
    """
    A reminders' pass done once for a group of people: "the end of 2026-12-07
    for everyone in Europe/Paris ending at 19:00". Unique, so that the pass
    that finds it done reads nothing else.
    """

    kind = models.CharField(_("kind"), max_length=32, choices=NotificationKind.choices)
    key = models.CharField(_("group"), max_length=128)
    occurrence = models.CharField(_("occurrence"), max_length=32)
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)

    class Meta:
        verbose_name = _("reminders' pass")
        verbose_name_plural = _("reminders' passes")
        constraints = [
            models.UniqueConstraint(fields=["kind", "key", "occurrence"], name="reminder_mark_once"),
        ]

    def __str__(self):
        return f"{self.kind} {self.key} {self.occurrence}"


# The most a rate may be, in minor units an hour: a day of one person's time at it stays far within 64 bits.
RATE_MAX_MINOR = 10_000_000


class Rate(models.Model):
    """
    An hourly rate, effective from an instant on, until the next rate of the
    same level and subject. Its level is what it names: a person on a
    project, a project, a client, a person, or nothing (the site's default);
    the most specific level that has begun prices an instant
    (``timesheet.domain.rates``).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("person"),
    )
    projet = models.ForeignKey(
        Projet, on_delete=models.CASCADE, null=True, blank=True, related_name="rates", verbose_name=_("project")
    )
    client = models.ForeignKey(
        Client, on_delete=models.CASCADE, null=True, blank=True, related_name="rates", verbose_name=_("client")
    )
    hourly_minor = models.PositiveBigIntegerField(_("hourly rate (minor units)"), validators=[MinValueValidator(0)])
    effective_from = models.DateTimeField(_("effective from"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)

    class Meta:
        ordering = ["-effective_from", "-id"]
        verbose_name = _("hourly rate")
        verbose_name_plural = _("hourly rates")
        constraints = [
            models.CheckConstraint(
                condition=Q(client__isnull=True) | Q(user__isnull=True, projet__isnull=True), name="rate_level_valid"
            ),
            models.CheckConstraint(condition=Q(hourly_minor__lte=RATE_MAX_MINOR), name="rate_bounded"),
            models.UniqueConstraint(
                Coalesce("user", 0),
                Coalesce("projet", 0),
                Coalesce("client", 0),
                "effective_from",
                name="rate_once_per_instant",
            ),
        ]
        indexes = [
            models.Index(fields=["projet", "user", "effective_from"], name="rate_projet_idx"),
            models.Index(fields=["client", "effective_from"], name="rate_client_idx"),
            models.Index(fields=["user", "effective_from"], name="rate_user_idx"),
        ]

    def __str__(self):
        return f"{self.hourly_minor} ({self.effective_from:%Y-%m-%d %H:%M})"


def default_thresholds() -> list[int]:
    return [80, 100]


class Budget(models.Model):
    """
    Time or money a project or a client may use, for its whole life or per
    calendar month (in the site's zone), with thresholds that alert once
    each per period, and optionally a stop at 100 %.

    The ticker keeps its live state: the usage at ``checked_at`` and the
    pace of its running fiches then, in micro-units (microseconds, or
    millionths of the currency's minor unit), and ``next_check_at``, when
    its next threshold would be crossed at that pace. A change to its
    projects' time leaves a ``BudgetMark`` so that the next tick computes
    it again.
    """

    class Kind(models.TextChoices):
        TIME = "time", _("time")
        MONEY = "money", _("money")

    class Period(models.TextChoices):
        TOTAL = "total", _("whole life")
        MONTH = "month", _("each calendar month")

    class Action(models.TextChoices):
        ALERT = "alert", _("alert")
        STOP = "stop", _("alert, and stop its running fiches at 100 %")

    projet = models.OneToOneField(
        Projet, on_delete=models.CASCADE, null=True, blank=True, related_name="budget", verbose_name=_("project")
    )
    client = models.OneToOneField(
        Client, on_delete=models.CASCADE, null=True, blank=True, related_name="budget", verbose_name=_("client")
    )
    kind = models.CharField(_("kind"), max_length=5, choices=Kind.choices, default=Kind.TIME)
    period = models.CharField(_("period"), max_length=5, choices=Period.choices, default=Period.TOTAL)
    # Seconds for time, minor units of CURRENCY for money.
    limit = models.PositiveBigIntegerField(_("limit"), validators=[MinValueValidator(1)])
    thresholds = models.JSONField(_("thresholds (percent)"), default=default_thresholds)
    action = models.CharField(_("action"), max_length=5, choices=Action.choices, default=Action.ALERT)
    period_key = models.CharField(_("period computed"), max_length=7, blank=True, editable=False)
    used_micro = models.BigIntegerField(_("used at the last check"), default=0, editable=False)
    pace_micro = models.BigIntegerField(_("pace at the last check"), default=0, editable=False)
    checked_at = models.DateTimeField(_("checked"), null=True, blank=True, editable=False)
    next_check_at = models.DateTimeField(_("next check"), null=True, blank=True, editable=False)
    exhausted_forecast_at = models.DateTimeField(
        _("exhausted, at this pace, at"), null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)

    class Meta:
        ordering = ["id"]
        verbose_name = _("budget")
        verbose_name_plural = _("budgets")
        constraints = [
            models.CheckConstraint(
                condition=Q(projet__isnull=False, client__isnull=True) | Q(projet__isnull=True, client__isnull=False),
                name="budget_of_one_subject",
            ),
            models.CheckConstraint(condition=Q(kind__in=["time", "money"]), name="budget_kind_valid"),
            models.CheckConstraint(condition=Q(period__in=["total", "month"]), name="budget_period_valid"),
            models.CheckConstraint(condition=Q(action__in=["alert", "stop"]), name="budget_action_valid"),
            models.CheckConstraint(condition=Q(limit__gte=1), name="budget_limit_positive"),
        ]
        indexes = [models.Index(fields=["next_check_at"], name="budget_next_check_idx")]

    def __str__(self):
        return str(_("budget of %(subject)s") % {"subject": self.projet or self.client})


class BudgetMark(models.Model):
    """
    A change to the time a budget counts, not yet computed: written by the
    change's own transaction, deleted by the check that computed it. Only
    inserted and deleted, never updated: a change never waits for a check,
    and a mark committed while a check runs outlives it.
    """

    id = models.BigAutoField(primary_key=True)
    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="marks", verbose_name=_("budget"))
    created_at = models.DateTimeField(_("created"), db_default=Now(), editable=False)

    class Meta:
        verbose_name = _("budget mark")
        verbose_name_plural = _("budget marks")

    def __str__(self):
        return f"{self.budget_id} #{self.pk}"


class BudgetCrossing(models.Model):
    """
    A threshold of a budget in one period: armed (``crossed_at`` empty) or
    crossed at that exact instant. A correction that brings the usage back
    under it arms it again and counts the re-arming, so that the next
    crossing is a new occurrence, notified once.
    """

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="crossings", verbose_name=_("budget"))
    period_key = models.CharField(_("period"), max_length=7, blank=True)
    percent = models.PositiveSmallIntegerField(_("percent"))
    crossed_at = models.DateTimeField(_("crossed"), null=True, blank=True)
    rearmed = models.PositiveIntegerField(_("times armed again"), default=0)
    # When it was last armed again: its next crossing is looked for after it.
    armed_at = models.DateTimeField(_("armed again"), null=True, blank=True)

    class Meta:
        ordering = ["budget", "period_key", "percent"]
        verbose_name = _("budget threshold")
        verbose_name_plural = _("budget thresholds")
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_key", "percent"], name="budget_crossing_once"),
        ]

    def __str__(self):
        return f"{self.budget} {self.percent} % {self.period_key}"


class StreamLease(models.Model):
    """
    One open live stream, whichever web process or host serves it, so that
    the per-person cap counts each stream once. The serving process renews
    its leases while the stream is open and deletes them when it closes; a
    lease whose process died counts until ``expires_at``.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    holder = models.CharField(max_length=100, help_text=_("The serving process: host and process id."))
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"], name="streamlease_user_live")]
        verbose_name = _("stream lease")
        verbose_name_plural = _("stream leases")

    def __str__(self):
        return f"{self.user_id} @ {self.holder}"
