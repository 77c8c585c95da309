"""
The event log as its readers follow it (timesheet.domain.eventlog): in
(transaction id, id) order, up to the horizon, so that an event committed
late is never passed over, and writers share no lock.
"""

import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from django.db import connection

from tests.factories import make_fiche, person, project
from tests.support import ROOT, postgresql_only, postgresql_session
from timesheet.core import xact
from timesheet.domain import eventlog, fiches
from timesheet.models import FicheEvent

pytestmark = pytest.mark.django_db(transaction=True)


def follow(position, seen, *, limit=1000):
    """Read everything final after ``position`` into ``seen`` (ids, in order); return the next position."""
    while True:
        events, position = eventlog.read(position, limit=limit)
        seen.extend(event.pk for event in events)
        if len(events) < limit:
            return position


def test_a_reader_started_now_reads_only_what_comes_after():
    owner, projet = person("alice"), project()
    fiche = make_fiche(projet, owner)
    start = eventlog.start()
    assert eventlog.read(start, limit=10)[0] == []
    fiches.start_fiche(fiche_id=fiche.pk, actor=owner)
    fiches.pause_fiche(fiche_id=fiche.pk, actor=owner)
    events, _after = eventlog.read(start, limit=10)
    assert [event.kind for event in events] == ["started", "paused"]


def test_a_reader_reads_in_batches_without_repeating_or_skipping():
    owner, projet = person("alice"), project()
    fiche = make_fiche(projet, owner)
    start = eventlog.start()
    for _ in range(7):
        fiches.start_fiche(fiche_id=fiche.pk, actor=owner)
        fiches.pause_fiche(fiche_id=fiche.pk, actor=owner)
    seen = []
    follow(start, seen, limit=3)
    expected = list(FicheEvent.objects.filter(kind__in=["started", "paused"]).values_list("pk", flat=True))
    assert sorted(seen) == sorted(expected) and len(seen) == 14


def test_each_event_carries_its_writers_transaction():
    owner, projet = person("alice"), project()
    fiche = make_fiche(projet, owner)
    fiches.start_fiche(fiche_id=fiche.pk, actor=owner)
    event = FicheEvent.objects.get(fiche=fiche, kind="started")
    if connection.vendor == "postgresql":
        assert event.txid > 0
        assert xact.horizon() > event.txid  # committed: below every later horizon
    else:
        assert event.txid == 0
        assert xact.horizon() is None


def test_an_event_committed_after_a_later_one_is_not_passed_over(worker_env):
    """
    The case that ordering by id alone gets wrong: a transaction writes an
    event (a lower id), another writes one (a higher id) and commits first.
    A reader that read the second and moved past it by id would never see
    the first. Here the reader sees neither until the first commits, then
    both, the first first.
    """
    postgresql_only("transactions that commit in another order than their ids")
    owner, projet = person("alice"), project()
    first, second = make_fiche(projet, owner), make_fiche(projet, person("bob"))
    start = eventlog.start()
    slow = postgresql_session(worker_env["DATABASE_URL"])
    try:
        with slow.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                "INSERT INTO timesheet_ficheevent (fiche_id, kind, at, delta, temps_impute, reason, changes)"
                " VALUES (%s, 'updated', now(), interval '0', interval '0', 'slow', '{}')",
                [first.pk],
            )
            # Another writer, later, commits at once; the slow one's row has the lower id.
            fiches.start_fiche(fiche_id=second.pk, actor=second.owner)
            assert eventlog.read(start, limit=10)[0] == []  # the horizon holds at the slow writer
            cursor.execute("COMMIT")
    finally:
        slow.close()
    events, _after = eventlog.read(start, limit=10)
    assert [(event.fiche_id, event.reason) for event in events] == [(first.pk, "slow"), (second.pk, "")]
    assert events[0].pk < events[1].pk or events[0].txid < events[1].txid


WRITER = textwrap.dedent(
    """
    import sys, time
    import django
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from timesheet.domain import fiches
    fiche_id, owner_id, mode, seconds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    owner = get_user_model().objects.get(pk=owner_id)
    if mode == "stall":
        # Starts a transition and never ends it: killed mid-transaction, it must leave nothing.
        with transaction.atomic():
            fiches.start_fiche(fiche_id=fiche_id, actor=owner)
            print("holding", flush=True)
            time.sleep(3600)
    deadline = time.monotonic() + seconds
    done = 0
    while time.monotonic() < deadline:
        fiches.start_fiche(fiche_id=fiche_id, actor=owner)
        fiches.pause_fiche(fiche_id=fiche_id, actor=owner)
        done += 2
    print("done", done, flush=True)
    """
)


@pytest.mark.slow
def test_readers_miss_nothing_under_a_storm_of_writers_and_a_writer_killed_mid_transaction(worker_env, tmp_path):
    postgresql_only("concurrent writers that commit out of id order")
    projet = project()
    owners = [person(f"writer{n}") for n in range(6)]
    fiche_ids = [make_fiche(projet, owner).pk for owner in owners]
    start = eventlog.start()
    seen: list[int] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def reader():
        # Reads as a stream's poller does, as often as it can, while the writers write.
        from django.db import connections

        try:
            position = start
            while not stop.is_set():
                position = follow(position, seen, limit=50)
            follow(position, seen, limit=50)
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            connections.close_all()

    def spawn(index, mode, seconds):
        return subprocess.Popen(
            [sys.executable, "-c", WRITER, str(fiche_ids[index]), str(owners[index].pk), mode, str(seconds)],
            cwd=ROOT,
            env=worker_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        staller = spawn(0, "stall", 0)
        assert staller.stdout.readline().strip() == "holding", staller.stdout.read()
        writers = [spawn(index, "storm", 4) for index in range(1, len(owners))]
        time.sleep(1)  # the storm runs while the stalled transaction is open
        staller.send_signal(signal.SIGKILL)
        staller.wait(30)
        outputs = [writer.communicate(timeout=120)[0] for writer in writers]
        assert all(writer.returncode == 0 for writer in writers), outputs
    finally:
        stop.set()
        thread.join(120)
    assert not failures, failures
    # The killed writer's transaction left nothing; every committed event was read once, in the log's order.
    assert not FicheEvent.objects.filter(fiche_id=fiche_ids[0]).exclude(kind="created").exists()
    committed = list(
        FicheEvent.objects.filter(fiche_id__in=fiche_ids[1:])
        .exclude(kind="created")
        .order_by("txid", "id")
        .values_list("pk", flat=True)
    )
    assert sum(int(output.split()[-1]) for output in outputs) == len(committed) > 0
    assert seen == committed


# After a restore into another cluster ------------------------------------------------------------


def test_events_from_a_restored_clusters_transactions_are_a_failed_check_until_rebased(capsys):
    from django.core.management import call_command

    from timesheet.domain import webhooks
    from timesheet.models import WebhookSubscription

    postgresql_only("transaction ids")
    owner, projet = person("alice"), project()
    fiche = make_fiche(projet, owner)
    for _ in range(3):
        fiches.start_fiche(fiche_id=fiche.pk, actor=owner)
        fiches.pause_fiche(fiche_id=fiche.pk, actor=owner)
    events = list(FicheEvent.objects.order_by("id"))
    # As a dump of another cluster whose ids ran far ahead, restored here: the same rows, their old ids.
    ahead = xact.next_id() + 1_000_000
    for number, event in enumerate(events):
        FicheEvent.objects.filter(pk=event.pk).update(txid=ahead + number)
    delivered = events[2]
    subscription = WebhookSubscription.objects.create(
        name="hook", url="https://example.com/hook", secret="s", cursor_txid=ahead + 2, cursor=delivered.pk
    )
    assert not webhooks.pending_events(subscription).exists()  # held back: those ids are still to come here
    (error,) = eventlog.check_written_ahead(databases=["default"])
    assert error.id == "timesheet.E090" and str(len(events)) in error.msg

    call_command("rebase_event_log")

    assert f"{len(events)} events now carry transaction id 0, 1 webhook cursors moved" in capsys.readouterr().out
    assert eventlog.check_written_ahead(databases=["default"]) == []
    subscription.refresh_from_db()
    assert [event.pk for event in webhooks.pending_events(subscription)] == [event.pk for event in events[3:]]
    fiches.start_fiche(fiche_id=fiche.pk, actor=owner)  # written from now on: after them all
    newest = FicheEvent.objects.latest("id")
    assert [event.pk for event in webhooks.pending_events(subscription)][-1] == newest.pk
    assert eventlog.rebase() == eventlog.Rebased(events=0, subscriptions=0)  # nothing ahead: nothing changed
    assert FicheEvent.objects.get(pk=newest.pk).txid == newest.txid > 0


def test_a_webhook_that_had_everything_still_gets_what_was_written_here_since_the_restore():
    from timesheet.domain import webhooks
    from timesheet.models import WebhookSubscription

    postgresql_only("transaction ids")
    owner, projet = person("alice"), project()
    fiche = make_fiche(projet, owner)
    fiches.start_fiche(fiche_id=fiche.pk, actor=owner)
    restored = list(FicheEvent.objects.order_by("id"))
    ahead = xact.next_id() + 1_000_000
    for number, event in enumerate(restored):
        FicheEvent.objects.filter(pk=event.pk).update(txid=ahead + number)
    caught_up = WebhookSubscription.objects.create(
        name="hook",
        url="https://example.com/hook",
        secret="s",
        cursor_txid=ahead + len(restored) - 1,
        cursor=restored[-1].pk,
    )
    fiches.pause_fiche(fiche_id=fiche.pk, actor=owner)  # written here after the restore, before the rebase
    written_here = FicheEvent.objects.latest("id")

    eventlog.rebase()

    caught_up.refresh_from_db()
    assert [event.pk for event in webhooks.pending_events(caught_up)] == [written_here.pk]


def test_the_log_check_waits_for_the_migration_that_made_it(monkeypatch):
    from timesheet.domain import eventlog as log

    monkeypatch.setattr(log, "TXID_MIGRATION", "9999_not_applied")
    monkeypatch.setattr(log, "written_ahead", lambda: pytest.fail("read a log that is not migrated yet"))
    assert log.check_written_ahead(databases=["default"]) == []
