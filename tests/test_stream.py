import asyncio
import gc
import json
import re
import threading
import time
import tracemalloc

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient

from tests.factories import running_fiche
from tests.support import wait_until
from timesheet.domain import fiches, tokens
from timesheet.web import stream
from timesheet.web.request_threads import RequestThreads
from timesheet.web.stream import hub

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_stream(settings):
    settings.STREAM_POLL_SECONDS = 0.05
    settings.STREAM_KEEPALIVE_SECONDS = 30


def parse(chunk):
    text = chunk.decode() if isinstance(chunk, bytes) else chunk
    fields = dict(line.split(": ", 1) for line in text.strip().splitlines() if not line.startswith(":"))
    return fields.get("event"), json.loads(fields["data"]) if "data" in fields else None


async def open_stream(user):
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get("/api/fiches/stream")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    return aiter(response.streaming_content)


def test_a_snapshot_then_an_event_for_a_pause_made_elsewhere(projet, user, other_user):
    mine = running_fiche(projet, user)
    theirs = running_fiche(projet, other_user)

    async def scenario():
        chunks = await open_stream(user)
        snapshot = parse(await anext(chunks))
        await sync_to_async(fiches.pause_fiche)(fiche_id=theirs.pk, actor=other_user)  # not alice's business
        await sync_to_async(fiches.pause_fiche)(fiche_id=mine.pk, actor=user)
        event = parse(await asyncio.wait_for(anext(chunks), 5))
        await chunks.aclose()
        return snapshot, event

    (name, snapshot), (kind, event) = async_to_sync(scenario)()
    assert name == "snapshot"
    assert [fiche["id"] for fiche in snapshot["fiches"]] == [mine.pk]
    assert kind == "fiche"
    assert event["event"]["kind"] == "paused"
    assert event["fiche"]["id"] == mine.pk
    assert event["fiche"]["etat"] == "en_pause"


def test_staff_streams_see_everyones_events(projet, user, staff):
    fiche = running_fiche(projet, user)

    async def scenario():
        chunks = await open_stream(staff)
        snapshot = parse(await anext(chunks))
        await sync_to_async(fiches.finish_fiche)(fiche_id=fiche.pk, actor=user)
        event = parse(await asyncio.wait_for(anext(chunks), 5))
        await chunks.aclose()
        return snapshot, event

    (_, snapshot), (_, event) = async_to_sync(scenario)()
    assert [f["id"] for f in snapshot["fiches"]] == [fiche.pk]
    assert (event["event"]["kind"], event["fiche"]["etat"]) == ("finished", "terminee")


def test_events_are_matched_to_streams_without_reading_permissions(user, other_user, django_assert_num_queries):
    # Every event is offered to every open stream, on the event loop: the privilege is the credential's.
    own = stream.Subscriber(credential=stream.Credential(user=user))
    everyones = stream.Subscriber(credential=stream.Credential(user=user, sees_everyones=True))
    with django_assert_num_queries(0):
        assert own.wants(user.pk) and not own.wants(other_user.pk)
        assert everyones.wants(user.pk) and everyones.wants(other_user.pk)


def test_a_quiet_stream_gets_keep_alive_comments(settings, user):
    settings.STREAM_KEEPALIVE_SECONDS = 0.05

    async def scenario():
        chunks = await open_stream(user)
        await anext(chunks)
        keepalive = await asyncio.wait_for(anext(chunks), 5)
        await chunks.aclose()
        return keepalive

    assert async_to_sync(scenario)() in (b": keep-alive\n\n", ": keep-alive\n\n")


async def consuming(user):
    """A task reading ``user``'s stream, once its snapshot came (the ASGI handler cancels it when the client leaves)."""
    chunks = await open_stream(user)
    received = []

    async def consume():
        async for chunk in chunks:
            received.append(chunk)

    consumer = asyncio.create_task(consume())
    while not received:
        await asyncio.sleep(0.01)
    return consumer


def test_a_disconnected_client_is_released_and_the_poller_stops(user):
    async def scenario():
        consumer = await consuming(user)
        assert len(hub.subscribers) == 1
        poller = hub.task
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await asyncio.sleep(0)
        return len(hub.subscribers), poller.cancelled(), hub.task

    subscribers, poller_cancelled, task = async_to_sync(scenario)()
    assert subscribers == 0
    assert poller_cancelled
    assert task is None


def test_a_client_that_leaves_as_an_event_arrives_is_released(user):
    async def scenario():
        consumer = await consuming(user)
        (subscriber,) = hub.subscribers
        # An event and the disconnect in the same instant: the stream's wait is woken, then cancelled.
        subscriber.queue.put_nowait(": an event\n\n")
        consumer.cancel()
        # It ends at once, or never (a stream that lives on): a few seconds tell them apart.
        done, _pending = await asyncio.wait([consumer], timeout=5)
        ended = consumer in done and consumer.cancelled()
        if not ended:
            consumer.cancel()  # once more: the stream that ignored the first must not outlive the test
            await asyncio.wait([consumer], timeout=5)
        return ended, len(hub.subscribers)

    ended, subscribers = async_to_sync(scenario)()
    assert ended
    assert subscribers == 0


def test_one_poller_serves_every_stream(user, monkeypatch, settings):
    settings.STREAM_MAX_PER_USER = 100
    calls = []
    real = stream.events_after
    monkeypatch.setattr(stream, "events_after", lambda position: calls.append(position) or real(position))

    async def scenario():
        opened = [await open_stream(user) for _ in range(50)]
        for chunks in opened:
            await anext(chunks)
        pollers = {hub.task}
        calls.clear()
        started = time.monotonic()
        while len(calls) < 5:
            assert time.monotonic() - started < 60, "the poller stopped polling"
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        polls = len(calls)
        subscribers = len(hub.subscribers)
        for chunks in opened:
            await chunks.aclose()
        return pollers, subscribers, polls, elapsed

    pollers, subscribers, polls, elapsed = async_to_sync(scenario)()
    assert subscribers == 50
    assert len(pollers) == 1
    # One poller polls once per interval: a loaded machine makes it slower, never
    # faster. Fifty pollers would make these five polls in a tenth of an interval.
    assert polls <= elapsed / settings.STREAM_POLL_SECONDS + 2


def test_a_slow_client_is_dropped_instead_of_growing_memory(user):
    async def scenario():
        chunks = await open_stream(user)
        await anext(chunks)  # the snapshot
        (subscriber,) = hub.subscribers
        for i in range(stream.QUEUE_SIZE + 5):  # the client reads nothing meanwhile
            subscriber.offer(f"message {i}")
        assert subscriber.queue.qsize() == stream.QUEUE_SIZE
        delivered = [bytes(chunk).decode() async for chunk in chunks]  # the stream ends by itself
        return subscriber.overflowed, delivered, len(hub.subscribers)

    overflowed, delivered, subscribers = async_to_sync(scenario)()
    assert overflowed
    # What was queued before the overflow (oldest dropped), then the stream ended: the client reconnects.
    assert delivered == [f"message {i}" for i in range(1, stream.QUEUE_SIZE)]
    assert subscribers == 0


# Notifications: to their recipient's own streams ---------------------------------------


def notify(owner, kind="missing_time", occurrence="2026-W45", **fields):
    from datetime import UTC, datetime

    from timesheet.models import Notification

    return Notification.objects.create(
        recipient=owner,
        kind=kind,
        subject=f"owner:{owner.pk}",
        occurrence=occurrence,
        occurred_at=datetime(2026, 11, 9, 8, tzinfo=UTC),
        payload={"week": occurrence, "days": []},
        **fields,
    )


def test_a_notification_reaches_its_recipients_streams_and_nobody_elses(user, staff):
    notify(user, occurrence="2026-W44")  # before the stream opens: counted in its snapshot

    async def scenario():
        mine, everyones = await open_stream(user), await open_stream(staff)  # staff see everyone's fiches
        snapshots = [parse(await anext(mine)), parse(await anext(everyones))]
        alices = await sync_to_async(notify)(user)
        event = parse(await asyncio.wait_for(anext(mine), 5))
        carols = await sync_to_async(notify)(staff)
        # Had alice's reached carol's stream, it would come first (the poller follows ids in order).
        seen_by_staff = parse(await asyncio.wait_for(anext(everyones), 5))
        await mine.aclose()
        await everyones.aclose()
        return snapshots, alices, event, carols, seen_by_staff

    snapshots, alices, event, carols, seen_by_staff = async_to_sync(scenario)()
    assert [data["notifications_unread"] for _name, data in snapshots] == [1, 0]  # each their own
    assert event == ("notification", {"id": alices.pk, "kind": "missing_time"})
    assert seen_by_staff == ("notification", {"id": carols.pk, "kind": "missing_time"})


def test_a_kind_turned_off_for_the_page_is_not_announced(user):
    from timesheet.domain import notifications

    notifications.set_preferences(user=user, choices={"missing_time": {"email"}})

    async def scenario():
        chunks = await open_stream(user)
        await anext(chunks)
        await sync_to_async(notify)(user)  # by email only
        told = await sync_to_async(notify)(user, kind="end_of_day", occurrence="2026-11-09")
        event = parse(await asyncio.wait_for(anext(chunks), 5))
        await chunks.aclose()
        return told, event

    told, event = async_to_sync(scenario)()
    assert event == ("notification", {"id": told.pk, "kind": "end_of_day"})


def test_a_notification_committed_after_a_later_numbered_one_is_still_announced(user):
    # Notifications are not numbered in commit order: id n may commit after n + 1 was read.
    from timesheet.models import Notification

    async def scenario():
        chunks = await open_stream(user)
        await anext(chunks)
        last = await sync_to_async(stream.latest_notification_id)()
        later = await sync_to_async(notify)(user, occurrence="2026-W46", id=last + 3)
        first = parse(await asyncio.wait_for(anext(chunks), 5))
        late = await sync_to_async(notify)(user, occurrence="2026-W47", id=last + 2)
        second = parse(await asyncio.wait_for(anext(chunks), 5))
        gaps = hub.cursor.notification_gaps
        after = await sync_to_async(notify)(user, occurrence="2026-W48")
        third = parse(await asyncio.wait_for(anext(chunks), 5))
        await chunks.aclose()
        return later, first, late, second, gaps, last, after, third

    later, first, late, second, gaps, last, after, third = async_to_sync(scenario)()
    assert first[1]["id"] == later.pk
    assert second[1]["id"] == late.pk  # found again among the gaps
    assert third[1]["id"] == after.pk  # and nothing told twice
    assert last + 2 not in gaps and last + 1 in gaps  # a gap is looked for again until it fills or expires
    assert Notification.objects.count() == 3


def test_gaps_are_forgotten_after_a_while_and_capped(monkeypatch):
    monkeypatch.setattr(stream, "NOTIFICATION_GAPS_MAX", 5)
    fresh = stream.EventHub()
    fresh._follow_notifications([stream.Notice(100, 1, "missing_time", True)], now=0.0)
    assert fresh.cursor.notification_id == 100
    assert fresh.cursor.notification_gaps == frozenset(range(95, 100))  # the newest few only
    fresh._follow_notifications([stream.Notice(97, 1, "missing_time", True)], now=1.0)
    assert fresh.cursor.notification_id == 100 and 97 not in fresh.cursor.notification_gaps
    fresh._follow_notifications([], now=stream.NOTIFICATION_GAP_SECONDS + 1)
    assert fresh.cursor.notification_gaps == frozenset()


# What an open stream holds -------------------------------------------------------------


class RawStream:
    """A stream requested of an ASGI application as uvicorn would, its client kept until ``leave()``."""

    def __init__(self, app, token):
        self.app = app
        self.headers = [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())]
        self.chunks = asyncio.Queue()
        self.gone = asyncio.Event()
        self.task = None

    async def open(self):
        """Request the stream; return its snapshot."""
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/api/fiches/stream",
            "query_string": b"",
            "headers": self.headers,
        }
        self.task = asyncio.create_task(self.app(scope, self.receive, self.send))
        return await asyncio.wait_for(self.chunks.get(), 60)

    async def receive(self):
        if not hasattr(self, "asked"):
            self.asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message):
        if message["type"] == "http.response.body" and message.get("body"):
            self.chunks.put_nowait(message["body"])

    async def leave(self):
        self.gone.set()
        await asyncio.wait_for(self.task, 60)


def request_threads_alive():
    """The threads requests hold or keep for the next ones (not those shared for their work after letting go)."""
    return [thread for thread in threading.enumerate() if re.match(r"request-\d+_", thread.name)]


def test_open_streams_hold_no_thread(settings, user):
    settings.STREAM_MAX_PER_USER = 100
    _token, raw = tokens.create_token(user=user, name="streams")
    app = RequestThreads(ASGIHandler(), idle=2)
    count = 30

    async def scenario():
        streams = [RawStream(app, raw) for _ in range(count)]
        snapshots = [parse(await raw_stream.open())[0] for raw_stream in streams]
        # Threads handed back past the idle limit end once their work is done.
        await asyncio.to_thread(wait_until, lambda: len(request_threads_alive()) <= app.idle_limit)
        while_open = len(request_threads_alive()), len(hub.subscribers)
        for raw_stream in streams:
            await raw_stream.leave()
        return snapshots, while_open, len(hub.subscribers)

    snapshots, (threads, subscribers), after = async_to_sync(scenario)()
    assert snapshots == ["snapshot"] * count
    assert subscribers == count
    assert threads <= 2  # not one per open stream
    assert after == 0


def test_an_open_stream_s_memory_is_bounded(settings, user):
    # Python's own allocations, traced: the stream's objects, the request's and the handler's, not the server's.
    settings.STREAM_MAX_PER_USER = 100
    _token, raw = tokens.create_token(user=user, name="streams")
    app = RequestThreads(ASGIHandler())
    count = 20

    async def scenario():
        warm = [RawStream(app, raw) for _ in range(3)]  # Django's caches filled, the poller running
        for raw_stream in warm:
            await raw_stream.open()
        streams = [RawStream(app, raw) for _ in range(count)]
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for raw_stream in streams:
                await raw_stream.open()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        for raw_stream in warm + streams:
            await raw_stream.leave()
        return grown / count

    per_stream = async_to_sync(scenario)()
    # The bound for a whole stream (bench/stream.py measures the server's RSS); its Python
    # objects alone measured 27 KiB, and 36 KiB once each stream took its lease in the database.
    assert per_stream < 50 * 1024, f"{per_stream / 1024:.1f} KiB per open stream"


def test_an_open_stream_holds_a_lease_renewed_while_it_is_open_and_given_back_when_it_closes(
    user, other_user, settings, monkeypatch
):
    from timesheet.domain import stream_leases
    from timesheet.models import StreamLease

    monkeypatch.setattr(stream_leases, "RENEW_EVERY_SECONDS", 0.1)
    settings.STREAM_MAX_PER_USER = 1
    # Another process's live stream of the same person fills the cap: this one's stream is refused.
    held = stream_leases.acquire(user_id=other_user.pk, cap=1, holder="elsewhere:1", seconds=60)

    async def scenario():
        refused = AsyncClient()
        await refused.aforce_login(other_user)
        response = await refused.get("/api/fiches/stream")
        client = AsyncClient()
        await client.aforce_login(user)
        opened = await client.get("/api/fiches/stream")
        chunks = aiter(opened.streaming_content)
        await anext(chunks)
        lease = await StreamLease.objects.aget(user=user)
        first_expiry = lease.expires_at
        await asyncio.to_thread(
            wait_until, lambda: StreamLease.objects.get(pk=lease.pk).expires_at > first_expiry, message="not renewed"
        )
        await sync_to_async(opened.close)()  # as Django closes a response whose client went away
        await asyncio.to_thread(
            wait_until, lambda: not StreamLease.objects.filter(user=user).exists(), message="not given back"
        )
        return response

    response = async_to_sync(scenario)()
    assert response.status_code == 429
    assert "At most 1 open streams per person" in json.loads(response.content)["error"]
    assert list(StreamLease.objects.values_list("pk", flat=True)) == [held]  # the other process's, untouched


def test_a_stream_that_cannot_take_its_lease_is_refused_as_unavailable_and_left_nowhere(user, monkeypatch):
    def broken(user_id):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(stream, "acquire_lease", broken)

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(user)
        return await client.get("/api/fiches/stream")

    response = async_to_sync(scenario)()
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "cannot open now" in json.loads(response.content)["error"]
    assert not hub.subscribers


def test_a_stream_opened_but_never_read_gives_its_place_back(user, monkeypatch):
    from timesheet.domain import stream_leases
    from timesheet.models import StreamLease

    monkeypatch.setattr(stream_leases, "RENEW_EVERY_SECONDS", 0.05)
    monkeypatch.setattr(stream, "UNSTARTED_SECONDS", 0.2)

    async def scenario():
        keeper = await open_stream(user)  # read: it stays
        await anext(keeper)
        abandoned = await stream.EventStream.open(stream.Credential(user=user))  # never read, never closed
        await asyncio.to_thread(
            wait_until, lambda: abandoned.subscriber not in hub.subscribers, message="the abandoned stream stayed"
        )
        await asyncio.to_thread(wait_until, lambda: StreamLease.objects.filter(user=user).count() == 1)
        still_open = len(hub.subscribers)
        await keeper.aclose()
        return still_open

    assert async_to_sync(scenario)() == 1


def test_the_web_process_sets_its_collector_policy_at_its_first_connection_and_only_once(monkeypatch):
    # Ten thousand streams are two million objects a full collection walks while every request
    # waits: the server's protocol sets rarer full passes as it serves its first connection.
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from timesheet.web import collector, server

    async def app(scope, receive, send):
        pass

    config = Config(app=app, log_config=None, http=server.DeadlineH11Protocol)
    loop = asyncio.new_event_loop()
    before = gc.get_threshold()
    monkeypatch.setattr(collector, "_applied", False)
    try:
        server.DeadlineH11Protocol(config, ServerState(), {}, _loop=loop)
        first = gc.get_threshold()
        gc.set_threshold(*before)  # changed since by someone else: theirs to keep
        server.DeadlineH11Protocol(config, ServerState(), {}, _loop=loop)
        second = gc.get_threshold()
    finally:
        gc.set_threshold(*before)
        loop.close()
    assert first == collector.THRESHOLDS
    assert collector.YOUNG > 700 and collector.OLD > 10  # fewer, rarer passes than Python's defaults
    assert second == before


def test_past_the_checks_per_poll_each_open_stream_s_credential_is_still_checked_in_turn(user, monkeypatch, settings):
    # A poll checks the credentials of a few open streams (and of those it delivers to), in turn:
    # an idle stream whose token is revoked still ends, a few polls later.
    settings.STREAM_MAX_PER_USER = 100
    monkeypatch.setattr(stream, "CHECKS_PER_POLL", 2)
    checked = []
    real = stream.poll
    monkeypatch.setattr(
        stream, "poll", lambda cursor, credentials: checked.append(len(credentials)) or real(cursor, credentials)
    )
    made = [tokens.create_token(user=user, name=f"stream {i}") for i in range(5)]
    app = RequestThreads(ASGIHandler())

    async def scenario():
        streams = [RawStream(app, raw) for _token, raw in made]
        for raw_stream in streams:
            await raw_stream.open()
        revoked = made[2][0]
        await sync_to_async(tokens.revoke_token)(token_id=revoked.pk, actor=user)
        await asyncio.to_thread(
            wait_until,
            lambda: {s.credential.token_id for s in hub.subscribers} == {t.pk for t, _raw in made} - {revoked.pk},
            message="the revoked stream stayed open",
        )
        for raw_stream in streams:
            if raw_stream is not streams[2]:
                await raw_stream.leave()
        await asyncio.wait_for(streams[2].task, 60)  # it ended by itself
        return max(checked)

    assert async_to_sync(scenario)() == 2  # never more than CHECKS_PER_POLL at once


def test_a_stream_gets_an_event_only_once_its_credential_is_checked_after_the_read(user, projet, monkeypatch, settings):
    # Past CHECKS_PER_POLL, a poll may read an event for a stream not due for its check: it is
    # checked then, after the read, and a revoked one gets nothing.
    settings.STREAM_MAX_PER_USER = 100
    monkeypatch.setattr(stream, "CHECKS_PER_POLL", 1)
    fiche = running_fiche(projet, user)
    made = [tokens.create_token(user=user, name=f"stream {i}") for i in range(3)]
    app = RequestThreads(ASGIHandler())

    async def scenario():
        streams = [RawStream(app, raw) for _token, raw in made]
        for raw_stream in streams:
            await raw_stream.open()
        # Revoked and an event made in the same instant, before the next poll reads either.
        for token, _raw in made:
            await sync_to_async(tokens.revoke_token)(token_id=token.pk, actor=user)
        await sync_to_async(fiches.pause_fiche)(fiche_id=fiche.pk, actor=user)
        for raw_stream in streams:
            await asyncio.wait_for(raw_stream.task, 60)  # each ends by itself
        return [raw_stream.chunks.qsize() for raw_stream in streams]

    assert async_to_sync(scenario)() == [0, 0, 0]  # no event after the snapshot
