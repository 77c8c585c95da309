"""Budgets: live usage, each threshold recorded once at the instant the ledger crossed it, and the stop at 100 %."""

import signal
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, connections, transaction
from django.utils import translation

from tests.factories import make_fiche, person, project
from tests.support import assert_exact, postgresql_only, sigkill_storm, wait_until
from timesheet.core.dbtime import db_now
from timesheet.domain import budgets, entries, fiches, notifications, notify, rates
from timesheet.domain.errors import Refused
from timesheet.models import (
    Budget,
    BudgetCrossing,
    BudgetMark,
    Client,
    Etat,
    FicheEvent,
    FicheTemps,
    Notification,
    NotificationDelivery,
    NotificationKind,
    Rate,
    Team,
    TeamMembership,
    WebhookSubscription,
)
from timesheet.workers.ticker import tick

M = timedelta(minutes=1)
H = timedelta(hours=1)


def whole_ms(instant):
    """``instant`` on a whole millisecond, as every instant is on SQLite."""
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def started_as_of(owner, projet, began):
    """A fiche of ``owner`` started as of ``began`` (an earlier instant), through the service."""
    fiche = make_fiche(projet, owner)
    return fiches.start_fiche(fiche_id=fiche.pk, actor=owner, at=began)


def crossings(budget):
    return {c.percent: c.crossed_at for c in BudgetCrossing.objects.filter(budget=budget)}


def alerts(**filters):
    return list(Notification.objects.filter(kind=NotificationKind.BUDGET_CROSSED, **filters).order_by("id"))


@pytest.fixture
def lead(db):
    return person("lea")


@pytest.fixture
def team_projet(lead):
    team = Team.objects.create(name="Studio")
    TeamMembership.objects.create(team=team, user=lead, lead=True)
    projet = project("Site vitrine")
    projet.teams.add(team)
    return projet, team


@pytest.fixture
def check_paused(monkeypatch):
    """
    (computed, go): a check run on a thread named "ticker" sets ``computed``
    once it has read its budgets' usage, then waits for ``go`` before it
    writes anything.
    """
    computed, go = threading.Event(), threading.Event()
    real_usage = budgets.usage

    def paused_usage(*args, **kwargs):
        result = real_usage(*args, **kwargs)
        if threading.current_thread().name == "ticker":
            computed.set()
            go.wait(30)
        return result

    monkeypatch.setattr(budgets, "usage", paused_usage)
    return computed, go


def members(team, *names):
    people = [person(name) for name in names]
    for someone in people:
        TeamMembership.objects.create(team=team, user=someone)
    return people


def hour_budget(projet, **fields):
    return budgets.save_budget(
        projet_id=projet.pk,
        kind=fields.pop("kind", "time"),
        period=fields.pop("period", "total"),
        limit=fields.pop("limit", 3600),
        thresholds=fields.pop("thresholds", [50, 100]),
        action=fields.pop("action", "alert"),
    )


def test_two_people_cross_half_at_twenty_minutes_and_all_at_thirty_five(team_projet, lead):
    projet, team = team_projet
    ann, bob = members(team, "ann", "bob")
    budget = hour_budget(projet)
    t0 = whole_ms(db_now() - 40 * M)
    started_as_of(ann, projet, t0)
    started_as_of(bob, projet, t0 + 10 * M)

    report = tick().budget_check

    assert report.crossed == 2
    assert crossings(budget) == {50: t0 + 20 * M, 100: t0 + 35 * M}
    told = alerts()
    # To the team's lead (staff who manage projects would be told too; there are none here).
    assert [(n.recipient, n.occurred_at, n.payload["percent"]) for n in told] == [
        (lead, t0 + 20 * M, 50),
        (lead, t0 + 35 * M, 100),
    ]
    assert tick().budget_check.crossed == 0  # recorded once


def test_stop_at_100_pauses_every_running_fiche_at_the_exact_instant(team_projet):
    projet, team = team_projet
    ann, bob = members(team, "ann", "bob")
    hour_budget(projet, action="stop")
    t0 = whole_ms(db_now() - 40 * M)
    first = started_as_of(ann, projet, t0)
    second = started_as_of(bob, projet, t0 + 10 * M)

    assert tick().budget_check.stopped == 2

    first, second = FicheTemps.objects.get(pk=first.pk), FicheTemps.objects.get(pk=second.pk)
    assert (first.etat, second.etat) == (Etat.EN_PAUSE, Etat.EN_PAUSE)
    assert (first.temps_impute, second.temps_impute) == (35 * M, 25 * M)
    assert first.auto_stopped and second.auto_stopped
    for fiche in (first, second):
        assert_exact(fiche.pk)
        event = FicheEvent.objects.filter(fiche=fiche, kind=FicheEvent.Kind.AUTO_STOPPED).get()
        assert event.at == t0 + 35 * M and "Budget exhausted" in event.reason


def test_a_fiche_started_after_the_budget_ran_out_but_before_the_tick_is_paused_at_its_start(team_projet):
    projet, team = team_projet
    ann, bob = members(team, "ann", "bob")
    hour_budget(projet, action="stop")
    t0 = whole_ms(db_now() - 2 * H)
    started_as_of(ann, projet, t0)
    late = started_as_of(bob, projet, t0 + 90 * M)  # the budget ran out at t0 + 1 h, before any tick

    tick()

    late = FicheTemps.objects.get(pk=late.pk)
    assert late.etat == Etat.EN_PAUSE and late.temps_impute == timedelta(0)
    assert_exact(late.pk)
    with pytest.raises(Refused) as refused:  # and now that it is known, no fiche of it starts
        fiches.start_fiche(fiche_id=late.pk, actor=bob)
    assert refused.value.code == "budget_exhausted"


def test_an_adjustment_below_a_threshold_arms_it_again_and_the_next_crossing_is_told_anew(team_projet, lead, superuser):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    budget = hour_budget(projet, thresholds=[50])
    fiche = started_as_of(ann, projet, whole_ms(db_now() - 40 * M))
    tick()
    assert list(crossings(budget)) == [50] and crossings(budget)[50] is not None

    fiches.pause_fiche(fiche_id=fiche.pk, actor=ann)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=superuser, delta=-20 * M, reason="oubli de pause")
    tick()

    crossing = BudgetCrossing.objects.get(budget=budget, percent=50)
    assert crossing.crossed_at is None and crossing.rearmed == 1
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=superuser, delta=15 * M, reason="finalement")
    tick()
    crossing.refresh_from_db()
    assert crossing.crossed_at is not None
    assert [n.occurrence for n in alerts(recipient=lead)] == [":50:0", ":50:1"]


def test_an_unchanged_budget_is_not_computed_again_until_its_next_threshold_is_due(team_projet):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    budget = hour_budget(projet, limit=10 * 3600, thresholds=[80])
    began = whole_ms(db_now() - H)
    started_as_of(ann, projet, began)

    assert tick().budget_check.checked == 1
    assert tick().budget_check.checked == 0
    budget.refresh_from_db()
    # 8 hours at one person's pace, 7 of them still to go.
    assert budget.next_check_at == began + 8 * H
    assert budget.exhausted_forecast_at == began + 10 * H
    assert not BudgetMark.objects.exists()


def test_a_change_to_a_projects_time_marks_its_budget_and_its_clients(team_projet):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    client = Client.objects.create(name="ACME")
    projet.client = client
    projet.save()
    own = hour_budget(projet)
    of_client = budgets.save_budget(
        client_id=client.pk, kind="time", period="month", limit=7200, thresholds=[80], action="alert"
    )
    tick()
    assert not BudgetMark.objects.exists()

    started_as_of(ann, projet, whole_ms(db_now() - M))

    assert set(BudgetMark.objects.values_list("budget_id", flat=True)) == {own.pk, of_client.pk}


def test_live_usage_counts_the_running_pace_since_the_last_check(team_projet):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    budget = hour_budget(projet, thresholds=[80, 100])
    began = whole_ms(db_now() - 30 * M)
    started_as_of(ann, projet, began)
    tick()
    budget.refresh_from_db()

    shown = budgets.live(budget, now=began + 45 * M, crossings=budget.crossings.all())

    assert shown["used"] == 45 * 60 and shown["left"] == 15 * 60 and shown["percent"] == 75.0
    assert shown["exhausted_forecast_at"] == began + H
    assert shown["thresholds"] == [{"percent": 80, "crossed_at": None}, {"percent": 100, "crossed_at": None}]


def test_a_month_budget_counts_only_this_months_time(team_projet, settings):
    settings.TIME_ZONE = "Europe/Paris"
    projet, team = team_projet
    (ann,) = members(team, "ann")
    budget = hour_budget(projet, period="month", limit=3600 * 1000)
    now = db_now()
    month = budgets.period_of("month", now)
    # An entry of the last day of last month, then one of this month.
    entries.add_entry(
        actor=ann, owner_id=ann.pk, projet_id=projet.pk, libelle="", start=month.start - 2 * H, end=month.start - H
    )
    entries.add_entry(
        actor=ann, owner_id=ann.pk, projet_id=projet.pk, libelle="", start=month.start, end=month.start + 30 * M
    )
    tick()
    budget.refresh_from_db()

    assert budget.period_key == month.key
    assert budget.used_micro == (30 * M) // timedelta(microseconds=1)


def test_a_money_budget_prices_each_part_of_a_running_stretch_at_its_own_rate(team_projet, lead):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    budget = hour_budget(projet, kind="money", limit=100_000, thresholds=[50])  # 1,000.00
    began = whole_ms(db_now() - 2 * H)
    started_as_of(ann, projet, began)
    # 60.00 an hour since long ago, then 90.00 an hour from a moment ago: set directly, as a past rate would be.
    Rate.objects.create(projet=projet, hourly_minor=6000, effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    change = began + H
    Rate.objects.create(projet=projet, hourly_minor=9000, effective_from=change)
    now = db_now()
    used = budgets.usage([budget], now=now)[budget.pk]

    expected = 6000 * (H // timedelta(microseconds=1)) + 9000 * ((now - change) // timedelta(microseconds=1))
    assert used.units == expected
    assert used.pace == 9000


def test_a_rate_cannot_begin_in_the_past(team_projet):
    projet, _team = team_projet
    with pytest.raises(Refused) as refused:
        rates.set_rate(hourly_minor=5000, effective_from=db_now() - M, actor=None, projet_id=projet.pk)
    assert refused.value.code == "invalid"


@pytest.mark.parametrize(
    "thresholds", ["", "abc", "0", "1001", "50,-1", "1e2", [None], ",".join(map(str, range(1, 12))), 7]
)
def test_thresholds_that_are_not_whole_percents_are_refused(team_projet, thresholds):
    projet, _team = team_projet
    with pytest.raises(Refused):
        hour_budget(projet, thresholds=thresholds)
    assert not Budget.objects.exists()


def test_staff_who_manage_projects_are_told_too(team_projet, lead):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    manager = person("manon", is_staff=True)
    manager.user_permissions.add(Permission.objects.get(codename="change_projet"))
    hour_budget(projet, thresholds=[50])
    started_as_of(ann, projet, whole_ms(db_now() - 40 * M))

    tick()

    assert sorted(n.recipient.username for n in alerts()) == ["lea", "manon"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_sigkill_storm_of_two_tickers_records_each_threshold_once(spawn_worker, lead, team_projet):
    projet, team = team_projet
    people = members(team, "ann", "bob", "cid")
    budget = hour_budget(projet, limit=120, thresholds=[25, 50, 75, 100])
    now = whole_ms(db_now())
    for n, someone in enumerate(people):
        started_as_of(someone, projet, now - timedelta(seconds=20 - 5 * n))
    survivors = sigkill_storm(spawn_worker, seconds=15, seed=25)
    wait_until(lambda: all(crossings(budget).get(p) for p in (25, 50, 75, 100)), timeout=120, message="all crossed")
    for worker in survivors:
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait() == 0

    told = alerts()
    assert sorted(n.payload["percent"] for n in told) == [25, 50, 75, 100]
    # The usage at each: 20 s of one person, then two, then three: computed from the starts, not when noticed.
    starts = [now - timedelta(seconds=20 - 5 * n) for n in range(3)]

    def used_at(instant):
        return sum((max(timedelta(0), instant - start) for start in starts), timedelta(0))

    for percent, at in crossings(budget).items():
        assert used_at(at) >= timedelta(seconds=120 * percent / 100) > used_at(at - timedelta(milliseconds=1))
    if connection.vendor == "sqlite":
        assert all(at.microsecond % 1000 == 0 for at in crossings(budget).values())


def test_a_crossing_is_emailed_to_each_recipient_and_posted_once_to_a_webhook_of_no_one(team_projet, lead, settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    projet, team = team_projet
    (ann,) = members(team, "ann")
    lead.email = "lea@example.org"
    lead.save()
    manager = person("manon", email="manon@example.org")
    manager.user_permissions.add(Permission.objects.get(codename="change_projet"))
    everyone = WebhookSubscription.objects.create(
        name="all", url="http://127.0.0.1:9/hook", secret="s", kinds=["budget.crossed"]
    )
    leads_own = WebhookSubscription.objects.create(
        name="lea's", url="http://127.0.0.1:9/lea", secret="s", kinds=["budget.crossed"], owner=lead
    )
    hour_budget(projet, thresholds=[50], action="stop")
    started_as_of(ann, projet, whole_ms(db_now() - 70 * M))
    tick()

    notify.fan_out(batch_size=100)

    deliveries = NotificationDelivery.objects.all()
    assert sorted(d.notification.recipient.username for d in deliveries.filter(channel="email")) == [
        "lea",
        "lea",
        "manon",
        "manon",
    ]  # 50 % and the exhaustion that stopped the fiche
    assert deliveries.filter(subscription=everyone).count() == 2  # once per crossing, not per recipient
    assert deliveries.filter(subscription=leads_own).count() == 2
    crossing = alerts(recipient=lead, payload__percent=100)[0]
    with translation.override("en"):
        message = notify.email_message(notification=crossing)
    assert "the budget of “Site vitrine” (1:00 h) reached 100 %." in message.body
    assert "Its running fiches were paused at that instant." in message.body
    assert notifications.title(crossing) == "“Site vitrine” has used 100 % of its budget."


# What a review found ---------------------------------------------------------------


def test_an_entry_in_the_year_50_does_not_break_the_tick(team_projet):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    budget = hour_budget(projet, thresholds=[80])
    start = datetime(50, 6, 1, 9, tzinfo=UTC)
    entries.add_entry(actor=ann, owner_id=ann.pk, projet_id=projet.pk, start=start, end=start + H)

    assert tick().budget_check.crossed == 1
    assert crossings(budget)[80] == start + 48 * M


def test_a_limit_beyond_what_a_budget_may_be_is_refused_and_a_large_one_has_no_forecast(team_projet, alice, user):
    projet, team = team_projet
    TeamMembership.objects.create(team=team, user=user)
    with pytest.raises(Refused):
        hour_budget(projet, limit=10**13)
    budget = hour_budget(projet, limit=10**12)  # 31,000 years: allowed, never forecast
    started_as_of(user, projet, whole_ms(db_now() - M))

    tick()

    budget.refresh_from_db()
    assert budget.exhausted_forecast_at is None and budget.next_check_at is None
    assert alice.get(f"/api/projets/{projet.pk}/").json()["budget"]["exhausted_forecast_at"] is None


@pytest.mark.parametrize("first", ["projet", "client"])
def test_a_project_and_its_clients_stop_budgets_stop_its_fiche_at_the_earliest_exhaustion(team_projet, first):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    client = Client.objects.create(name="ACME")
    projet.client = client
    projet.save()
    make = {
        "projet": lambda: hour_budget(projet, thresholds=[100], action="stop"),
        "client": lambda: budgets.save_budget(
            client_id=client.pk, kind="time", period="total", limit=5400, thresholds=[100], action="stop"
        ),
    }
    made = {first: make[first]()}
    made.update({name: build() for name, build in make.items() if name not in made})
    t0 = whole_ms(db_now() - 100 * M)
    fiche = started_as_of(ann, projet, t0)

    tick()

    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == H  # the project's hour, whatever the order
    assert crossings(made["projet"]) == {100: t0 + H}
    assert crossings(made["client"]) == {100: None}  # its 90 minutes were never reached
    sibling = project("Autre", client=client)
    fiches.start_fiche(fiche_id=make_fiche(sibling, ann, "ailleurs").pk, actor=ann)  # the client's time is not up


def test_a_crossing_in_the_last_moments_of_a_month_is_recorded_in_that_month(team_projet, settings, monkeypatch):
    settings.TIME_ZONE = "Europe/Paris"
    projet, team = team_projet
    (ann,) = members(team, "ann")
    budget = hour_budget(projet, period="month", thresholds=[100], action="stop")
    month = budgets.period_of("month", db_now())
    start = month.start - H - timedelta(seconds=1)
    entries.add_entry(actor=ann, owner_id=ann.pk, projet_id=projet.pk, start=start, end=month.start + 20 * M)
    monkeypatch.setattr(budgets, "db_now", lambda: month.start - timedelta(seconds=2))
    budgets.check()
    monkeypatch.setattr(budgets, "db_now", lambda: month.start + timedelta(seconds=3))

    budgets.check()

    last = budgets.period_of("month", month.start - H).key
    crossing = BudgetCrossing.objects.get(budget=budget, period_key=last, percent=100)
    assert crossing.crossed_at == start + H
    assert BudgetCrossing.objects.get(budget=budget, period_key=month.key, percent=100).crossed_at is None


def test_a_threshold_crossed_again_after_its_re_arming_is_recorded_at_the_new_crossing(team_projet, superuser):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    budget = hour_budget(projet, thresholds=[50])
    fiche = started_as_of(ann, projet, whole_ms(db_now() - 40 * M))
    tick()
    fiches.pause_fiche(fiche_id=fiche.pk, actor=ann)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=superuser, delta=-20 * M, reason="oubli de pause")
    tick()
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=superuser, delta=15 * M, reason="finalement")
    again = FicheEvent.objects.filter(fiche=fiche, kind="adjusted").latest("id").at

    tick()

    assert crossings(budget)[50] == again
    assert {n.occurrence: n.occurred_at for n in alerts()}[":50:1"] == again


def test_new_terms_find_the_crossings_again(team_projet):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    budget = hour_budget(projet, thresholds=[50])
    t0 = whole_ms(db_now() - 40 * M)
    started_as_of(ann, projet, t0)
    tick()
    assert crossings(budget)[50] == t0 + 30 * M

    budgets.save_budget(
        projet_id=projet.pk,
        kind="time",
        period="total",
        limit=4200,
        thresholds=[50],
        action="alert",
        budget_id=budget.pk,
    )
    tick()

    assert crossings(budget)[50] == t0 + 35 * M


def test_a_running_fiche_is_not_moved_onto_a_used_up_stop_budget(team_projet):
    projet, team = team_projet
    (ann,) = members(team, "ann")
    hour_budget(projet, limit=60, thresholds=[100], action="stop")
    now = whole_ms(db_now())
    entries.add_entry(actor=ann, owner_id=ann.pk, projet_id=projet.pk, start=now - 3 * H, end=now - 2 * H)
    tick()
    elsewhere = project("Ailleurs")
    running = fiches.create_fiche(projet_id=elsewhere.pk, actor=ann, start=True)

    with pytest.raises(Refused) as refused:
        fiches.update_fiche(fiche_id=running.pk, actor=ann, projet_id=projet.pk)

    assert refused.value.code == "budget_exhausted"
    assert FicheTemps.objects.get(pk=running.pk).projet_id == elsewhere.pk


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_while_the_check_computes_is_computed_at_the_next_tick(team_projet, check_paused):
    computed, go = check_paused
    projet, team = team_projet
    ann, bob = members(team, "ann", "bob")
    budget = hour_budget(projet, thresholds=[50, 100], action="stop")
    fiche = make_fiche(projet, ann)
    tick()
    make_fiche(projet, bob)  # a change: the budget is marked

    def ticker():
        try:
            budgets.check()
        finally:
            connections.close_all()

    thread = threading.Thread(target=ticker, name="ticker")
    thread.start()
    assert computed.wait(30)
    began = whole_ms(db_now() - 70 * M)
    fiches.start_fiche(fiche_id=fiche.pk, actor=ann, at=began)  # neither waits for the check nor is lost
    go.set()
    thread.join(30)

    tick()

    assert crossings(budget) == {50: began + 30 * M, 100: began + H}
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_PAUSE


@pytest.mark.django_db(transaction=True)
def test_a_fiche_held_by_another_transaction_at_the_stop_is_stopped_by_the_next_check(team_projet):
    postgresql_only("row locks that others can hold")
    projet, team = team_projet
    (ann,) = members(team, "ann")
    hour_budget(projet, thresholds=[100], action="stop")
    began = whole_ms(db_now() - 70 * M)
    fiche = started_as_of(ann, projet, began)
    locked, release = threading.Event(), threading.Event()

    def holder():  # another ticker's settle batch, say, holding the fiche's row for a moment
        try:
            with transaction.atomic():
                list(FicheTemps.objects.select_for_update().filter(pk=fiche.pk))
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(30)
    assert budgets.check().stopped == 0
    release.set()
    thread.join(30)

    assert budgets.check().stopped == 1
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == H


@pytest.mark.django_db(transaction=True)
def test_a_start_racing_the_stop_at_100_does_not_deadlock(team_projet, check_paused):
    computed, go = check_paused
    projet, team = team_projet
    ann, bob = members(team, "ann", "bob")
    client = Client.objects.create(name="ACME")
    projet.client = client
    projet.save()
    hour_budget(projet, limit=10**6, thresholds=[80])
    budgets.save_budget(client_id=client.pk, kind="time", period="total", limit=3600, thresholds=[100], action="stop")
    started_as_of(ann, projet, whole_ms(db_now() - 70 * M))
    waiting = make_fiche(projet, bob)
    errors = []

    def run(name, work):
        def target():
            try:
                work()
            except Exception as error:
                errors.append((name, repr(error)))
            finally:
                connections.close_all()

        thread = threading.Thread(target=target, name=name)
        thread.start()
        return thread

    checker = run("ticker", budgets.check)
    assert computed.wait(30)
    starter = run("start", lambda: fiches.start_fiche(fiche_id=waiting.pk, actor=bob))
    starter.join(30)
    go.set()
    checker.join(30)

    assert not [error for error in errors if "deadlock" in error[1].lower()], errors


@pytest.mark.parametrize("limit", ["Infinity", "300000000000", "1e999", "-3", "abc", "٣:00", "٣"])
def test_the_admin_budget_form_refuses_limits_that_are_not_one(superuser_client, team_projet, limit):
    projet, _team = team_projet
    response = superuser_client.post(
        "/admin/timesheet/budget/add/",
        {
            "projet": projet.pk,
            "kind": "time",
            "period": "total",
            "action": "alert",
            "limit_text": limit,
            "thresholds_text": "80, 100",
            "crossings-TOTAL_FORMS": "0",
            "crossings-INITIAL_FORMS": "0",
            "crossings-MIN_NUM_FORMS": "0",
            "crossings-MAX_NUM_FORMS": "1000",
        },
    )

    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert not Budget.objects.exists()
