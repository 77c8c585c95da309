"""Personal API tokens: made once, stored hashed, scoped, expiring, revocable, throttled."""

import asyncio
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.test import AsyncClient, Client

from tests.factories import running_fiche
from tests.fixtures.redis_server import redis_command
from tests.support import wait_until
from timesheet.domain import tokens
from timesheet.models import ApiToken, Etat, FicheTemps
from timesheet.web.api.throttles import TokenRateThrottle

pytestmark = pytest.mark.django_db


def make_token(client, **body):
    response = client.post("/api/tokens/", json.dumps({"name": "script", **body}), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def bearer(raw):
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_a_token_is_shown_once_and_stored_hashed(alice, user):
    made = make_token(alice, scope="write", expires_in_days=30)
    assert made["token"].startswith("fdt_") and made["scope"] == "write"
    stored = ApiToken.objects.get(pk=made["id"])
    assert made["token"] not in (stored.key_hash, stored.prefix)
    assert stored.user == user
    assert timedelta(days=29) < stored.expires_at - stored.created_at <= timedelta(days=30, seconds=5)
    listed = alice.get("/api/tokens/").json()
    assert [t["id"] for t in listed] == [made["id"]]
    assert "token" not in listed[0]


def test_a_token_signs_in_without_session_or_csrf(alice, projet, user):
    raw = make_token(alice, scope="write")["token"]
    fiche = running_fiche(projet, user)
    client = Client(enforce_csrf_checks=True)
    assert client.get("/api/fiches/", **bearer(raw)).json()["count"] == 1
    response = client.post(f"/api/fiches/{fiche.pk}/pause", content_type="application/json", **bearer(raw))
    assert response.status_code == 200
    assert response.json()["etat"] == "en_pause"
    assert ApiToken.objects.get().last_used_at is not None


def test_a_token_of_staff_by_group_reads_everyones_fiches_and_time(projet, user, other_user):
    from django.contrib.auth.models import Group, Permission

    reviewers = Group.objects.create(name="reviewers")
    reviewers.permissions.set(Permission.objects.filter(codename="view_fichetemps"))
    other_user.groups.add(reviewers)
    _token, raw = tokens.create_token(user=other_user, name="review")
    fiche = running_fiche(projet, user)
    client = Client()
    assert client.get("/api/fiches/", **bearer(raw)).json()["count"] == 1
    assert client.get(f"/api/fiches/{fiche.pk}/", **bearer(raw)).json()["owner"]["id"] == user.pk
    today = date.today()
    days = f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"
    report = client.get(f"/api/reports/?{days}&owner={user.pk}", **bearer(raw))
    assert report.status_code == 200, report.content
    assert {row["owner"]["id"] for row in report.json()["rows"]} == {user.pk}


def test_a_token_reads_someone_elses_fiche_as_not_found(projet, user, other_user):
    _token, raw = tokens.create_token(user=other_user, name="script")
    fiche = running_fiche(projet, user)
    response = Client().get(f"/api/fiches/{fiche.pk}/", **bearer(raw))
    assert response.status_code == 404
    assert response.json() == {"error": f"Fiche {fiche.pk} does not exist.", "code": "not_found"}


def test_ones_own_fiche_is_read_and_moved_without_reading_permissions(projet, user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _token, raw = tokens.create_token(user=user, name="script", scope=ApiToken.Scope.WRITE)
    fiche = running_fiche(projet, user)
    client = Client()
    client.get(f"/api/fiches/{fiche.pk}/", **bearer(raw))  # notes the token's use: a write once a minute
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/api/fiches/{fiche.pk}/", **bearer(raw)).status_code == 200
        response = client.post(f"/api/fiches/{fiche.pk}/pause", content_type="application/json", **bearer(raw))
        assert response.status_code == 200
    assert queries.captured_queries
    assert not [query["sql"] for query in queries.captured_queries if "auth_permission" in query["sql"]]


def test_a_tokens_use_is_noted_at_most_once_a_minute(user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    token, raw = tokens.create_token(user=user, name="script")
    assert tokens.authenticate(raw).pk == token.pk
    noted = ApiToken.objects.get().last_used_at
    assert noted is not None
    with CaptureQueriesContext(connection) as queries:
        assert tokens.authenticate(raw).pk == token.pk
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["SELECT"]
    ApiToken.objects.update(last_used_at=noted - tokens.LAST_USED_RESOLUTION - timedelta(seconds=1))
    tokens.authenticate(raw)
    assert ApiToken.objects.get().last_used_at >= noted


def test_a_read_token_cannot_change_anything(alice, projet, user):
    raw = make_token(alice)["token"]
    fiche = running_fiche(projet, user)
    response = Client().post(f"/api/fiches/{fiche.pk}/pause", content_type="application/json", **bearer(raw))
    assert response.status_code == 403
    assert "read-only" in response.json()["error"]
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_CALCUL


def test_a_revoked_token_is_refused_at_once(alice):
    made = make_token(alice)
    client = Client()
    assert client.get("/api/fiches/", **bearer(made["token"])).status_code == 200
    assert alice.delete(f"/api/tokens/{made['id']}/").status_code == 204
    response = client.get("/api/fiches/", **bearer(made["token"]))
    assert response.status_code == 401
    assert response.json() == {"error": "The token is unknown, expired or revoked."}


@pytest.mark.parametrize(
    "spoil",
    [
        lambda token: ApiToken.objects.filter(pk=token.pk).update(expires_at=token.created_at),
        lambda token: type(token.user).objects.filter(pk=token.user_id).update(is_active=False),
    ],
    ids=["expired", "user deactivated"],
)
def test_an_expired_token_or_a_deactivated_user_is_refused(user, spoil):
    token, raw = tokens.create_token(user=user, name="cli")
    spoil(token)
    assert Client().get("/api/fiches/", **bearer(raw)).status_code == 401


@pytest.mark.parametrize("header", ["Bearer fdt_nope_nope", "Bearer " + "x" * 5000, "Bearer fdt__", "Basic abc"])
def test_a_malformed_or_unknown_token_is_401(header):
    response = Client().get("/api/fiches/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert "error" in response.json()


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_a_token_cannot_manage_tokens_and_is_told_to_sign_in(alice, method):
    made = make_token(alice, scope="write")

    url = "/api/tokens/" if method != "delete" else f"/api/tokens/{made['id']}/"
    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
    response = getattr(Client(), method)(url, **body, **bearer(made["token"]))

    assert response.status_code == 401
    assert "needs a session" in response.json()["error"]


@pytest.mark.parametrize("scheme", ["Token", "token", "Basic"])
def test_a_token_sent_with_another_scheme_is_told_to_use_bearer(alice, scheme):
    raw = make_token(alice)["token"]

    response = Client().get("/api/fiches/", HTTP_AUTHORIZATION=f"{scheme} {raw}")

    assert response.status_code == 401
    assert "Authorization: Bearer <token>" in response.json()["error"] and scheme in response.json()["error"]


def test_one_cannot_revoke_someone_elses_token(alice, other_user):
    theirs, _ = tokens.create_token(user=other_user, name="theirs")
    response = alice.delete(f"/api/tokens/{theirs.pk}/")
    assert response.status_code == 404
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None


@pytest.mark.parametrize(
    "body, text",
    [
        ({"name": ""}, "'name': String should have at least 1 character"),
        ({"scope": "admin"}, "'scope': Input should be 'read' or 'write'"),
        ({"expires_in_days": 0}, "'expires_in_days': Input should be greater than or equal to 1"),
        ({"expires_in_days": 1000}, "'expires_in_days': Input should be less than or equal to 366"),
    ],
)
def test_bad_token_requests_are_400_and_make_nothing(alice, body, text):
    response = alice.post("/api/tokens/", json.dumps({"name": "x", **body}), content_type="application/json")
    assert response.status_code == 400
    assert text in response.json()["error"]
    assert not ApiToken.objects.exists()


def test_requests_are_throttled_per_token(alice, settings):
    cache.clear()
    settings.API_TOKEN_RATE = "3/min"
    first, second = make_token(alice)["token"], make_token(alice, name="other")["token"]
    client = Client()
    assert [client.get("/api/fiches/", **bearer(first)).status_code for _ in range(3)] == [200] * 3
    throttled = client.get("/api/fiches/", **bearer(first))
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert "error" in throttled.json()
    assert client.get("/api/fiches/", **bearer(second)).status_code == 200  # each token its own budget
    cache.clear()


def a_tokens_request(token_id=1):
    """What the throttle reads of a request: the token it came with."""
    return SimpleNamespace(api_token=SimpleNamespace(pk=token_id))


@pytest.fixture(params=["memory", "redis"])
def shared_cache(request, settings):
    """Each process's memory (no REDIS_URL), or Django's Redis cache on a redis-server of the tests' own."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    cache.clear()
    yield request.param
    cache.clear()


def test_racing_requests_of_one_token_get_exactly_the_rate(shared_cache, settings):
    settings.API_TOKEN_RATE = "30/min"
    throttle = TokenRateThrottle()
    start = threading.Barrier(8)

    def requests_of_one_thread(_):
        start.wait(30)
        return [throttle.allow_request(a_tokens_request()) for _ in range(25)]

    with ThreadPoolExecutor(8) as pool:
        answers = [answer for answers in pool.map(requests_of_one_thread, range(8)) for answer in answers]
    assert answers.count(True) == 30 and len(answers) == 200


def test_a_refused_request_is_told_when_its_window_ends(shared_cache, settings):
    settings.API_TOKEN_RATE = "2/hour"
    throttle = TokenRateThrottle()
    assert [throttle.allow_request(a_tokens_request()) for _ in range(3)] == [True, True, False]
    assert 3500 < throttle.wait() <= 3600
    assert throttle.allow_request(a_tokens_request(token_id=2))  # another token: its own window
    assert throttle.wait() is None


def test_a_new_window_opens_when_the_last_one_ends(shared_cache, settings):
    settings.API_TOKEN_RATE = "2/s"
    throttle = TokenRateThrottle()
    while throttle.allow_request(a_tokens_request()):  # the window's budget, spent
        pass
    wait_until(lambda: throttle.allow_request(a_tokens_request()), every=0.05)  # the next window's first


def test_an_async_requests_rate_is_counted_off_the_event_loop(alice, settings, monkeypatch):
    import asyncio

    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from timesheet.web.api import throttles

    settings.API_TOKEN_RATE = "2/hour"
    on_the_loop = []
    real_add, real_incr = throttles.cache.add, throttles.cache.incr

    def noted(real):
        def call(*args, **kwargs):
            on_the_loop.append(asyncio._get_running_loop() is not None)
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(throttles.cache, "add", noted(real_add))
    monkeypatch.setattr(throttles.cache, "incr", noted(real_incr))
    token = make_token(alice)["token"]

    async def three_requests():
        client = AsyncClient()
        return [(await client.get("/api/fiches/", headers={"Authorization": f"Bearer {token}"})) for _ in range(3)]

    answers = async_to_sync(three_requests)()
    assert [answer.status_code for answer in answers] == [200, 200, 429], answers[0].content  # still counted, each once
    assert on_the_loop and not any(on_the_loop)
    cache.clear()


def test_a_window_left_without_an_expiry_ends_a_period_later(shared_cache, settings):
    # As a window whose expiry was lost (the store failed between INCR and its repair): a count, no end, no expiry.
    settings.API_TOKEN_RATE = "2/s"
    cache.set("throttle:token:1:1", 50, None)
    throttle = TokenRateThrottle()

    assert not throttle.allow_request(a_tokens_request())
    assert 0 < throttle.wait() <= 1
    wait_until(lambda: throttle.allow_request(a_tokens_request()), every=0.05)  # the next window's first


def test_the_windows_count_expires_on_redis(redis_url, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url, "KEY_PREFIX": "t"}
    }
    settings.API_TOKEN_RATE = "5/min"
    assert TokenRateThrottle().allow_request(a_tokens_request(token_id=7))
    assert 0 < int(redis_command(redis_url, "TTL", "t:1:throttle:token:7:60")) <= 60
    assert redis_command(redis_url, "GET", "t:1:throttle:token:7:60") == b"1"  # one request counted


def test_a_cache_that_does_not_answer_lets_requests_through_and_says_so_once(settings, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens there once the socket is closed
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://127.0.0.1:{closed}"}
    }
    settings.API_TOKEN_RATE = "1/min"
    throttle = TokenRateThrottle()
    assert [throttle.allow_request(a_tokens_request()) for _ in range(3)] == [True] * 3
    assert caplog.text.count("The cache does not answer") == 1


def test_a_cache_that_does_not_answer_is_not_asked_again_for_a_while(settings, monkeypatch):
    from timesheet.web.api import throttles

    asked = []

    def down(*args, **kwargs):
        asked.append(args)
        raise ConnectionError("no answer")

    monkeypatch.setattr(throttles.cache, "add", down)
    clock = [1000.0]
    monkeypatch.setattr(throttles, "monotonic", lambda: clock[0])
    settings.API_TOKEN_RATE = "1/min"
    throttle = TokenRateThrottle()
    assert all(throttle.allow_request(a_tokens_request()) for _ in range(5))
    assert len(asked) == 1  # one stall, not one per request
    clock[0] += throttles.STORE_RETRY_SECONDS
    assert throttle.allow_request(a_tokens_request())
    assert len(asked) == 2  # asked again once the pause is over


@pytest.mark.django_db(transaction=True)
def test_an_open_stream_ends_when_its_token_is_revoked(user, projet, settings):
    settings.STREAM_POLL_SECONDS = 0.05
    token, raw = tokens.create_token(user=user, name="watch")

    async def scenario():
        response = await AsyncClient().get("/api/fiches/stream", headers={"Authorization": f"Bearer {raw}"})
        assert response.status_code == 200
        chunks = aiter(response.streaming_content)
        await anext(chunks)  # the snapshot
        await asyncio.to_thread(tokens.revoke_token, token_id=token.pk, actor=user)
        await asyncio.to_thread(running_fiche, projet, user)  # an event it must not deliver
        return [chunk async for chunk in chunks]  # ends by itself

    assert async_to_sync(scenario)() == []
