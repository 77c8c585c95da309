"""Hostile and broken clients: bounded bodies, JSON errors never 500s, streams that follow their credentials."""

import asyncio
import json
import threading
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.sessions.models import Session
from django.test import AsyncClient, Client

from tests.support import SESSION_ENDINGS, signed_in, wait_until
from timesheet.domain import fiches, health, profiles
from timesheet.domain.errors import Refused
from timesheet.web import views
from timesheet.web.asgi_limits import BodyLimit
from timesheet.web.stream import hub

pytestmark = pytest.mark.django_db


def post_json(client, url, text, **kwargs):
    return client.post(url, text, content_type="application/json", **kwargs)


@pytest.mark.parametrize(
    "url, body, text",
    [
        ("/api/login", '{"username": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper"),
        ("/api/login", '{"username": "\\ud800", "password": "x"}', "valid Unicode"),
        ("/api/fiches/", '{"projet": 1, "libelle": "\\udfff"}', "valid Unicode"),
    ],
)
def test_hostile_json_is_a_400_never_a_500(user, url, body, text):
    client = signed_in(user)
    response = post_json(client, url, body)
    assert response.status_code == 400
    assert text in response.json()["error"]


def test_a_multipart_sign_in_is_415():
    response = Client().post("/api/login", {"username": "x", "password": "y"})
    assert response.status_code == 415
    assert "must be JSON" in response.json()["error"]


def test_head_is_answered_wherever_get_is(user):
    assert Client().head("/healthz").status_code in (200, 503)
    client = signed_in(user)
    response = client.head("/api/fiches/")
    assert (response.status_code, response.content) == (200, b"")
    assert client.head("/api/openapi.json").status_code == 200


class Recorder:
    """An ASGI app that reads the whole body and answers 200, noting that it ran."""

    def __init__(self):
        self.called = False

    async def __call__(self, scope, receive, send):
        self.called = True
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def run_asgi(app, headers, chunks):
    sent = []

    async def receive():
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "headers": headers}, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_declared_body_over_the_limit_is_413_before_anything_reads_it():
    inner = Recorder()
    status, body = run_asgi(BodyLimit(inner, max_bytes=10), [(b"content-length", b"500000000")], [b"x" * 11])
    assert (status, json.loads(body)) == (413, {"error": "The body is larger than 10 bytes."})
    assert not inner.called


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit():
    status, _body = run_asgi(BodyLimit(Recorder(), max_bytes=10), [], [b"x" * 6, b"x" * 6, b"x" * 6])
    assert status == 413


def test_a_body_within_the_limit_goes_through():
    assert run_asgi(BodyLimit(Recorder(), max_bytes=10), [(b"content-length", b"4")], [b"abcd"]) == (200, b"ok")


def test_health_answers_within_its_timeout_when_the_database_does_not(monkeypatch):
    monkeypatch.setattr(views, "HEALTH_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(views, "ticker_status", lambda: time.sleep(5) or {"healthy": True})
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["reason"] == "The database did not answer within 0.2 s."
    assert health  # the real check is left in place for the other tests


# Streams --------------------------------------------------------------------------


@pytest.fixture
def quick_streams(settings):
    settings.STREAM_POLL_SECONDS = 0.05
    settings.STREAM_KEEPALIVE_SECONDS = 30


async def open_stream(client):
    response = await client.get("/api/fiches/stream")
    assert response.status_code == 200, response.content
    return aiter(response.streaming_content)


def revocations():
    def sign_out(user, client):
        Session.objects.all().delete()

    def demote(user, client):
        type(user).objects.filter(pk=user.pk).update(is_staff=False)

    def withdraw_permissions(user, client):  # staff still, without the permissions to see fiches
        user.user_permissions.clear()

    def ending(name):
        return lambda user, client: SESSION_ENDINGS[name](user)

    return {
        "signed out": sign_out,
        "deactivated": ending("deactivated"),
        "demoted": demote,
        "permissions withdrawn": withdraw_permissions,
        "password changed": ending("password changed"),
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("revocation", list(revocations()))
def test_a_revoked_stream_delivers_nothing_more_and_ends(quick_streams, staff, other_user, projet, revocation):
    revoke = revocations()[revocation]

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(staff)
        chunks = await open_stream(client)
        await anext(chunks)  # the snapshot
        await sync_to_async(revoke)(staff, client)
        # Someone else's event, which a staff stream would have carried.
        await sync_to_async(fiches.create_fiche)(projet_id=projet.pk, actor=other_user, start=True)
        return [chunk async for chunk in chunks]  # ends by itself within a poll

    assert async_to_sync(scenario)() == []


@pytest.mark.django_db(transaction=True)
def test_a_stream_opened_while_a_poll_runs_is_not_taken_for_revoked(
    quick_streams, monkeypatch, user, other_user, projet
):
    from timesheet.web import stream

    real_poll = stream.poll
    polling, release = threading.Event(), threading.Event()
    polls = []  # one entry per poll that ended

    def held_poll(cursor, credentials):
        polling.set()
        release.wait(30)  # held until a stream has opened meanwhile
        try:
            return real_poll(cursor, credentials)
        finally:
            polls.append(len(credentials))

    monkeypatch.setattr(stream, "poll", held_poll)

    async def scenario():
        first, second = AsyncClient(), AsyncClient()
        await first.aforce_login(other_user)
        await second.aforce_login(user)
        kept = await open_stream(first)  # the poller runs
        await anext(kept)
        polling.clear()
        await asyncio.to_thread(polling.wait, 30)
        chunks = await open_stream(second)  # opened while a poll runs
        release.set()
        await anext(chunks)
        ended = len(polls)
        await asyncio.to_thread(wait_until, lambda: len(polls) >= ended + 2)  # polls come and go
        await sync_to_async(fiches.create_fiche)(projet_id=projet.pk, actor=user, start=True)
        chunk = await asyncio.wait_for(anext(chunks), 30)  # still open: the event arrives
        await chunks.aclose()
        await kept.aclose()
        return chunk

    assert b"event: fiche" in bytes(async_to_sync(scenario)())


@pytest.mark.django_db(transaction=True)
def test_a_stream_ends_at_its_maximum_lifetime(quick_streams, settings, user):
    settings.STREAM_MAX_SECONDS = 0.2

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(user)
        chunks = await open_stream(client)
        await anext(chunks)
        return [chunk async for chunk in chunks]

    assert async_to_sync(scenario)() == []


@pytest.mark.django_db(transaction=True)
def test_streams_are_capped_per_user_with_429_and_retry_after(quick_streams, settings, user):
    settings.STREAM_MAX_PER_USER = 2

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(user)
        opened = [await open_stream(client) for _ in range(2)]
        for chunks in opened:
            await anext(chunks)
        refused = await client.get("/api/fiches/stream")
        for chunks in opened:
            await chunks.aclose()
        return refused

    refused = async_to_sync(scenario)()
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "open streams per person" in json.loads(refused.content)["error"]
    assert not hub.subscribers


@pytest.mark.django_db(transaction=True)
def test_an_event_carries_the_state_it_produced(quick_streams, user, projet):
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=user)

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(user)
        chunks = await open_stream(client)
        await anext(chunks)
        # Started then paused before the poller reads them: each event says what it did.
        await sync_to_async(fiches.start_fiche)(fiche_id=fiche.pk, actor=user)
        await sync_to_async(fiches.pause_fiche)(fiche_id=fiche.pk, actor=user)
        events = []
        while len(events) < 2:
            text = (await asyncio.wait_for(anext(chunks), 30)).decode()
            data = next(line[6:] for line in text.splitlines() if line.startswith("data: "))
            events.append(json.loads(data)["event"])
        await chunks.aclose()
        return events

    started, paused = async_to_sync(scenario)()
    assert (started["kind"], started["etat"]) == ("started", "en_calcul")
    assert (paused["kind"], paused["etat"]) == ("paused", "en_pause")


# The admin ------------------------------------------------------------------------


def test_bad_ids_and_filters_in_the_admin_are_404_and_400(superuser_client):
    assert superuser_client.get("/admin/timesheet/fichetemps/abc/adjust/").status_code == 404
    assert superuser_client.get("/admin/timesheet/fichetemps/export/?created_at__year=abc").status_code == 400
    assert superuser_client.get("/admin/timesheet/fichetemps/export/?nonexistent=1").status_code == 400


def test_the_admin_csv_neutralises_formulas(superuser_client, projet, user):
    fiches.create_fiche(projet_id=projet.pk, actor=user, libelle='=HYPERLINK("http://x")')
    text = b"".join(superuser_client.get("/admin/timesheet/fichetemps/export/")).decode()
    assert "'=HYPERLINK" in text


# Sign-in throttling ------------------------------------------------------------------


@pytest.fixture
def three_tries(settings):
    settings.AXES_FAILURE_LIMIT = 3


def api_login(client, password):
    return post_json(client, "/api/login", json.dumps({"username": "alice", "password": password}))


def test_repeated_failed_api_sign_ins_are_429_even_with_the_right_password(three_tries, user):
    client = Client()
    assert [api_login(client, "wrong").status_code for _ in range(2)] == [401, 401]
    locked = api_login(client, "wrong")
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    assert "Too many failed sign-ins" in locked.json()["error"]
    assert api_login(client, "x").status_code == 429  # the right one too, until the cool-off


def test_the_lockout_holds_on_the_admin_and_the_page_and_staff_can_clear_it(three_tries, user, superuser_client):
    from axes.models import AccessAttempt

    for _ in range(3):
        Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert Client().post("/accounts/login/", {"username": "alice", "password": "x"}).status_code == 429
    assert Client().post("/admin/login/", {"username": "alice", "password": "x"}).status_code == 429
    assert "alice" in superuser_client.get("/admin/axes/accessattempt/").content.decode()
    AccessAttempt.objects.all().delete()  # what the admin's delete action does
    assert api_login(Client(), "x").status_code == 200


# One authorisation rule: the admin's model permissions ---------------------------------


def staff_with(*codenames):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(f"staff-{'-'.join(codenames) or 'none'}", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = signed_in(user)
    return user, client


def test_staff_without_model_permissions_have_no_powers_in_the_api(projet, user):
    theirs = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    _staff, client = staff_with()
    assert client.get("/api/fiches/").json()["count"] == 0
    assert client.get(f"/api/fiches/{theirs.pk}/").status_code == 404
    assert post_json(client, f"/api/fiches/{theirs.pk}/pause", "{}").status_code == 404
    created = post_json(client, "/api/fiches/", json.dumps({"projet": projet.pk, "owner": user.pk}))
    assert created.status_code == 403


def test_the_view_permission_sees_everyones_fiches_but_only_change_acts_on_them(projet, user):
    theirs = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    _viewer, viewer = staff_with("view_fichetemps")
    assert viewer.get("/api/fiches/").json()["count"] == 1
    refused = post_json(viewer, f"/api/fiches/{theirs.pk}/pause", "{}")
    assert refused.status_code == 403 and "permission to change" in refused.json()["error"]
    _changer, changer = staff_with("view_fichetemps", "change_fichetemps")
    assert post_json(changer, f"/api/fiches/{theirs.pk}/pause", "{}").json()["etat"] == "en_pause"


def test_starting_a_fiche_on_a_project_deactivated_since_is_refused(projet, user):
    from timesheet.models import Projet

    fiche = fiches.create_fiche(projet_id=projet.pk, actor=user)
    Projet.objects.filter(pk=projet.pk).update(actif=False)
    with pytest.raises(Refused, match="not active"):
        fiches.start_fiche(fiche_id=fiche.pk, actor=user)


def test_health_is_exempt_from_the_https_redirect_that_everything_else_gets(settings, production_env):
    import subprocess
    import sys

    from tests.support import ROOT

    # The production settings' own exemption, read from a production process.
    env = production_env
    printed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, json; django.setup(); from django.conf import settings as s; "
            "print(json.dumps([s.SECURE_SSL_REDIRECT, s.SECURE_REDIRECT_EXEMPT]))",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    redirect, exempt = json.loads(printed.stdout)
    settings.SECURE_SSL_REDIRECT, settings.SECURE_REDIRECT_EXEMPT = redirect, exempt
    assert Client().get("/healthz").status_code in (200, 503)
    assert Client().get("/api/fiches/").status_code == 301


# Found in review --------------------------------------------------------------------------


def test_report_dates_at_the_ends_of_the_calendar_are_400_not_500(user):
    client = signed_in(user)
    for query in ("from=9999-12-30&to=9999-12-31", "from=0001-01-01&to=0001-01-02"):
        response = client.get(f"/api/reports/?{query}")
        assert response.status_code == 400 and "years 2 to 9998" in response.json()["error"]


def test_giving_a_running_fiche_to_someone_already_running_one_is_refused(projet, user, other_user, settings):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    settings.FICHE_MAX_RUNNING_PER_OWNER = 1
    mine = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    fiches.create_fiche(projet_id=projet.pk, actor=other_user, start=True)
    boss = get_user_model().objects.create_user("boss", is_staff=True)
    boss.user_permissions.set(Permission.objects.filter(codename__in=["view_fichetemps", "change_fichetemps"]))
    boss = get_user_model().objects.get(pk=boss.pk)
    with pytest.raises(Refused) as refused:
        fiches.update_fiche(fiche_id=mine.pk, actor=boss, owner=other_user)
    assert refused.value.code == "limit_reached"


def test_a_time_zone_change_is_refused_once_days_are_locked(user):
    from datetime import date

    from timesheet.models import LockedPeriod

    profiles.set_time_zone(user=user, name="Europe/Paris")
    LockedPeriod.objects.create(until=date(2026, 1, 31))
    with pytest.raises(Refused) as refused:
        profiles.set_time_zone(user=user, name="Pacific/Kiritimati")
    assert refused.value.code == "locked"


def test_staff_without_the_permission_cannot_revoke_someone_elses_token(user):
    from timesheet.domain import tokens
    from timesheet.models import ApiToken

    token, _raw = tokens.create_token(user=user, name="mine")
    _staff, client = staff_with()
    assert client.delete(f"/api/tokens/{token.pk}/").status_code == 404
    assert ApiToken.objects.get().revoked_at is None


def test_only_a_superuser_makes_a_token_for_someone_else_in_the_admin(user):
    from django.contrib.auth.models import Permission

    staff, client = staff_with()
    staff.user_permissions.set(Permission.objects.filter(codename__in=["add_apitoken", "view_apitoken"]))
    response = client.post(
        "/admin/timesheet/apitoken/add/", {"user": user.pk, "name": "x", "scope": "write", "lifetime_days": 5}
    )
    assert response.status_code == 200 and "Only a superuser" in response.content.decode()


def test_control_characters_do_not_break_the_spreadsheet():
    from timesheet.domain import exports

    report = {
        "rows": [
            {
                "period": "2026-01-05",
                "owner": {"username": "a\x07b"},
                "projet": {"designation": "p\x00"},
                "seconds": 60.0,
                "rounded_seconds": 60.0,
                "billable_seconds": 60.0,
                "amount": "1.00",
            }
        ],
        "totals": {"seconds": 60.0, "rounded_seconds": 60.0, "billable_seconds": 60.0, "amount": "1.00"},
        "currency": "EUR",
        "rounding": {"mode": "none", "step_minutes": 15, "scope": "group"},
    }
    assert exports.as_xlsx(report)[:2] == b"PK"
