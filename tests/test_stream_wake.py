"""The streams' poller woken by PostgreSQL's LISTEN/NOTIFY, polling kept beside it, and reads coalesced."""

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.test import AsyncClient

from tests.factories import running_fiche
from tests.support import postgresql_only, wait_until
from timesheet.core.wake import CHANNEL
from timesheet.domain import fiches
from timesheet.web import stream, stream_wake
from timesheet.web.stream import hub

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 60
# Longer than any test: an event that arrives came through a wake-up, not a poll.
NEVER = 3600


def parse_kind(chunk):
    text = bytes(chunk).decode()
    return next((line[7:] for line in text.splitlines() if line.startswith("event: ")), None)


async def open_response(user):
    """``user``'s stream response, its snapshot read: close it with ``leave``."""
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get("/api/fiches/stream")
    assert response.status_code == 200
    response.chunks = aiter(response.streaming_content)
    assert parse_kind(await anext(response.chunks)) == "snapshot"
    return response


async def open_stream(user):
    return (await open_response(user)).chunks


async def leave(response):
    """The client goes: the server stops reading the stream, and closes the response (as Django's handler does)."""
    await response.chunks.aclose()
    await sync_to_async(response.close)()


async def until(condition):
    await asyncio.to_thread(wait_until, condition, TIMEOUT)


def terminate(backend_pid):
    """End a PostgreSQL session from the server's side, as a restart or a network cut would."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid])


def notify(times):
    with connection.cursor() as cursor:
        for _ in range(times):
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, "events"])


def sessions_alive(backend_pid):
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend_pid])
        return cursor.fetchone()[0]


class HeldReads:
    """``stream.poll`` counted, and held at will on the poller's thread until released."""

    def __init__(self, monkeypatch):
        self.started = 0
        self.finished = 0
        self.hold = False
        self.release = threading.Event()
        real = stream.poll

        def held(cursor, credentials):
            self.started += 1
            if self.hold:
                self.release.wait(TIMEOUT)
            try:
                return real(cursor, credentials)
            finally:
                self.finished += 1

        monkeypatch.setattr(stream, "poll", held)


@pytest.fixture
def away(monkeypatch):
    """The listener's next connections wait until ``back`` (an asyncio event) is set: the database is away."""
    real = stream_wake.connect
    gate = {"back": None}

    async def connect(params):
        await gate["back"].wait()
        return await real(params)

    monkeypatch.setattr(stream_wake, "connect", connect)
    monkeypatch.setattr(stream_wake, "RETRY_SECONDS", 0.01)
    return gate


def test_a_commit_wakes_the_poller_long_before_its_next_poll(settings, projet, user):
    postgresql_only("LISTEN/NOTIFY")
    settings.STREAM_POLL_SECONDS = NEVER
    fiche = running_fiche(projet, user)

    async def scenario():
        chunks = await open_stream(user)
        await until(lambda: hub.listener is not None and hub.listener.listening.is_set())
        await sync_to_async(fiches.pause_fiche)(fiche_id=fiche.pk, actor=user)
        event = await asyncio.wait_for(anext(chunks), TIMEOUT)
        await chunks.aclose()
        return event

    event = async_to_sync(scenario)()
    assert parse_kind(event) == "fiche"
    assert b'"kind":"paused"' in bytes(event)


def test_the_listening_connection_closes_with_the_last_stream(settings, user):
    postgresql_only("LISTEN/NOTIFY")
    settings.STREAM_POLL_SECONDS = NEVER

    async def scenario():
        first, second = await open_response(user), await open_response(user)
        await until(lambda: hub.listener is not None and hub.listener.backend_pid is not None)
        listener = hub.listener
        backend = listener.backend_pid
        await leave(first)
        await until(lambda: len(hub.subscribers) == 1)
        still = hub.listener is listener and listener.backend_pid == backend  # one stream left: it listens on
        await leave(second)
        await until(lambda: hub.task is None and hub.listener is None)
        return still, backend, listener.connections

    still, backend, connections = async_to_sync(scenario)()
    assert still
    assert connections == 1  # one listening connection for both streams
    wait_until(lambda: not sessions_alive(backend), TIMEOUT)


async def stream_with_its_listener_cut(user, away):
    """A stream of ``user``'s, once its process listens, and the listener whose connection was then cut."""
    away["back"] = asyncio.Event()
    away["back"].set()
    chunks = await open_stream(user)
    await until(lambda: hub.listener is not None and hub.listener.listening.is_set())
    listener = hub.listener
    away["back"].clear()  # it reconnects only once the test sets it again
    await sync_to_async(terminate)(listener.backend_pid)
    await until(lambda: not listener.listening.is_set())
    return chunks, listener


def test_back_from_a_lost_connection_the_poller_reads_at_once(settings, projet, user, away):
    # The NOTIFY of a commit made while nobody listened is lost: only the read at reconnection delivers it.
    postgresql_only("LISTEN/NOTIFY")
    settings.STREAM_POLL_SECONDS = NEVER
    fiche = running_fiche(projet, user)

    async def scenario():
        chunks, listener = await stream_with_its_listener_cut(user, away)  # the reconnection waits
        await sync_to_async(fiches.pause_fiche)(fiche_id=fiche.pk, actor=user)
        away["back"].set()
        event = await asyncio.wait_for(anext(chunks), TIMEOUT)
        await chunks.aclose()
        return event, listener.connections

    event, connections = async_to_sync(scenario)()
    assert connections == 2
    assert parse_kind(event) == "fiche"
    assert b'"kind":"paused"' in bytes(event)


def test_while_the_listener_is_away_the_streams_poll(settings, projet, user, away):
    postgresql_only("LISTEN/NOTIFY")
    settings.STREAM_POLL_SECONDS = 0.05
    fiche = running_fiche(projet, user)

    async def scenario():
        chunks, listener = await stream_with_its_listener_cut(user, away)  # and it never comes back
        await sync_to_async(fiches.pause_fiche)(fiche_id=fiche.pk, actor=user)
        event = await asyncio.wait_for(anext(chunks), TIMEOUT)
        reconnected = listener.listening.is_set()
        await chunks.aclose()
        return event, reconnected

    event, reconnected = async_to_sync(scenario)()
    assert not reconnected
    assert parse_kind(event) == "fiche"


def test_a_storm_of_notifies_makes_one_more_read_not_one_each(settings, user, monkeypatch):
    postgresql_only("LISTEN/NOTIFY")
    settings.STREAM_POLL_SECONDS = NEVER
    reads = HeldReads(monkeypatch)
    wakes = []
    real_wake = stream.EventHub.wake
    monkeypatch.setattr(stream.EventHub, "wake", lambda self: wakes.append(1) or real_wake(self))

    async def scenario():
        chunks = await open_stream(user)
        await until(lambda: hub.listener is not None and hub.listener.listening.is_set())
        await until(lambda: reads.finished == reads.started == 1)  # the read at connection
        reads.hold = True
        await sync_to_async(notify)(1)
        await until(lambda: reads.started == 2)  # a read runs, held
        woken = len(wakes)
        await sync_to_async(notify)(50)
        await until(lambda: len(wakes) == woken + 50)  # every NOTIFY came while the read ran
        reads.hold = False
        reads.release.set()
        await until(lambda: reads.finished == 3)  # the one read they made after it
        await asyncio.sleep(0)
        idle = not hub.woken.is_set()
        counts = reads.started, reads.finished
        await chunks.aclose()
        return counts, idle

    (started, finished), idle = async_to_sync(scenario)()
    assert (started, finished) == (3, 3)
    assert idle


def test_wake_ups_while_a_read_runs_make_one_more_read(settings, user, monkeypatch):
    # The same coalescing, whatever wakes the poller (on SQLite nothing does: here the test does).
    settings.STREAM_POLL_SECONDS = NEVER
    reads = HeldReads(monkeypatch)

    async def scenario():
        chunks = await open_stream(user)
        # On PostgreSQL, the listener's read at its connection first.
        await until(lambda: hub.listener is None or hub.listener.listening.is_set())
        await until(lambda: reads.finished == reads.started and (hub.listener is None or reads.finished == 1))
        before = reads.finished
        reads.hold = True
        hub.wake()
        await until(lambda: reads.started == before + 1)
        for _ in range(100):
            hub.wake()
        reads.hold = False
        reads.release.set()
        await until(lambda: reads.finished == before + 2)
        await asyncio.sleep(0)
        idle = not hub.woken.is_set()
        counts = reads.started - before, reads.finished - before
        await chunks.aclose()
        return counts, idle

    counts, idle = async_to_sync(scenario)()
    assert counts == (2, 2)
    assert idle


def test_a_woken_read_delivers_nothing_to_a_stream_revoked_before_it(settings, projet, user):
    # The credentials of those a woken read delivers to are checked after the read, as at every poll.
    from django.contrib.sessions.models import Session

    settings.STREAM_POLL_SECONDS = NEVER
    fiche = running_fiche(projet, user)

    async def scenario():
        chunks = await open_stream(user)
        await sync_to_async(lambda: Session.objects.all().delete())()  # signed out
        await sync_to_async(fiches.pause_fiche)(fiche_id=fiche.pk, actor=user)
        hub.wake()
        return [chunk async for chunk in chunks]  # ends without the event

    assert async_to_sync(scenario)() == []


def test_on_sqlite_nothing_listens(settings, user):
    if connection.vendor == "postgresql":
        pytest.skip("SQLite only: no LISTEN/NOTIFY there")
    settings.STREAM_POLL_SECONDS = NEVER

    async def scenario():
        chunks = await open_stream(user)
        listener = hub.listener
        await chunks.aclose()
        return listener

    assert async_to_sync(scenario)() is None


def test_the_listener_connects_with_django_s_settings_on_a_connection_of_its_own():
    postgresql_only("LISTEN/NOTIFY")
    params = stream_wake.connection_params()
    assert params["dbname"] == connection.settings_dict["NAME"]  # the test database: where the writers notify
    assert "cursor_factory" not in params and "context" not in params  # Django's sync cursor and adapters
    assert params["keepalives"] == 1
