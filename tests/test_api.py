import json
from datetime import datetime, timedelta

import pytest
from django.test import Client

from tests.factories import make_fiche, running_fiche
from tests.support import SESSION_ENDINGS, elapse, signed_in
from timesheet.models import Etat, FicheEvent, FicheTemps, Projet

pytestmark = pytest.mark.django_db


def post(client, url, body=None, **kwargs):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body or {})
    return client.post(url, data, content_type="application/json", **kwargs)


def assert_error(response, status, text):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert text in response.json()["error"]


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/fiches/"),
        ("post", "/api/fiches/"),
        ("get", "/api/fiches/1/"),
        ("post", "/api/fiches/1/pause"),
        ("get", "/api/fiches/stream"),
        ("post", "/api/logout"),
    ],
)
def test_anonymous_requests_get_401_json_not_a_redirect(method, url):
    response = getattr(Client(), method)(url, content_type="application/json")
    assert_error(response, 401, "Authentication required")


def test_list_shows_only_ones_own_fiches_with_live_time(alice, projet, user, other_user):
    mine = running_fiche(projet, user)
    running_fiche(projet, other_user)
    elapse(0.02)
    body = alice.get("/api/fiches/").json()
    assert body["count"] == 1
    [fiche] = body["results"]
    assert fiche["id"] == mine.pk
    assert fiche["etat"] == "en_calcul"
    assert fiche["temps_impute"] == 0
    assert fiche["temps_live"] >= 0.02
    assert fiche["server_time"] and fiche["en_calcul_depuis"]
    assert fiche["projet"] == {"id": projet.pk, "designation": projet.designation}


def test_staff_see_everyones_fiches_and_filter_by_owner(staff, projet, user, other_user):
    running_fiche(projet, user)
    theirs = running_fiche(projet, other_user)
    client = signed_in(staff)
    assert client.get("/api/fiches/").json()["count"] == 2
    body = client.get(f"/api/fiches/?owner={other_user.pk}").json()
    assert [f["id"] for f in body["results"]] == [theirs.pk]


@pytest.mark.parametrize("start", [True, False])
def test_a_fiche_reads_alike_when_made_listed_and_shown(alice, projet, start):
    body = json.dumps({"projet": projet.pk, "libelle": "Relecture", "start": start})
    made = alice.post("/api/fiches/", body, content_type="application/json").json()  # from the model
    listed = alice.get("/api/fiches/").json()["results"][0]  # from rows
    shown = alice.get(f"/api/fiches/{made['id']}/").json()
    moving = {"temps_live", "server_time"} if start else {"server_time"}  # read at three instants

    def fixed(fiche):
        return {key: value for key, value in fiche.items() if key not in moving}

    assert set(made) == set(listed) == set(shown)
    assert fixed(made) == fixed(listed) == fixed(shown)


def test_filters_by_state_and_project(alice, projet, user):
    other_projet = Projet.objects.create(designation="Autre")
    running = running_fiche(projet, user)
    paused = make_fiche(projet, user)
    elsewhere = running_fiche(other_projet, user)
    assert [f["id"] for f in alice.get("/api/fiches/?etat=en_pause").json()["results"]] == [paused.pk]
    ids = {f["id"] for f in alice.get(f"/api/fiches/?projet={projet.pk}&etat=en_calcul").json()["results"]}
    assert ids == {running.pk}
    assert elsewhere.pk not in ids


def test_pagination(alice, projet, user):
    for _ in range(5):
        make_fiche(projet, user)
    first = alice.get("/api/fiches/?page_size=2").json()
    assert (first["count"], first["pages"], len(first["results"]), first["previous"]) == (5, 3, 2, None)
    third = alice.get(first["next"].replace("page=2", "page=3")).json()
    assert len(third["results"]) == 1 and third["next"] is None
    assert_error(alice.get("/api/fiches/?page=4&page_size=2"), 404, "Page 4 does not exist; there are 3.")


@pytest.mark.parametrize(
    "query, status, text",
    [
        ("etat=running", 400, "'etat': Input should be 'en_calcul', 'en_pause' or 'terminee'."),
        ("projet=abc", 400, "'projet': Input should be a valid integer"),
        ("projet=0", 400, "'projet': Input should be greater than or equal to 1."),
        ("page=-1", 400, "'page': Input should be greater than or equal to 1."),
        ("page_size=1000", 400, "'page_size': Input should be less than or equal to 200."),
        ("owner=99999999999999999999999", 400, "'owner': Input should be less than or equal to"),
        ("page=%00", 400, "'page': Input should be a valid integer"),
    ],
)
def test_bad_query_parameters_are_400(alice, query, status, text):
    assert_error(alice.get(f"/api/fiches/?{query}"), status, text)


def test_non_staff_cannot_filter_on_someone_else(alice, other_user):
    assert_error(alice.get(f"/api/fiches/?owner={other_user.pk}"), 403, "Only staff")


def test_create_a_fiche_started_at_once(alice, projet, user):
    response = post(alice, "/api/fiches/", {"projet": projet.pk, "libelle": "Réunion", "start": True})
    assert response.status_code == 201
    body = response.json()
    assert (body["etat"], body["libelle"], body["owner"]["id"]) == ("en_calcul", "Réunion", user.pk)
    assert FicheEvent.objects.filter(fiche_id=body["id"]).count() == 2


@pytest.mark.parametrize(
    "body, status, text",
    [
        (
            "{bad json",
            400,
            "The body is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2).",
        ),
        ("[1, 2]", 400, "The body must be a JSON object."),
        (b"\xff\xfe", 400, "The body must be JSON in UTF-8"),
        ({}, 400, "'projet': Field required."),
        ({"projet": "1"}, 400, "'projet': Input should be a valid integer."),
        ({"projet": True}, 400, "'projet': Input should be a valid integer."),
        ({"projet": 10**30}, 400, "'projet': Input should be less than or equal to"),
        ({"projet": 999}, 404, "Project 999 does not exist."),
        ({"projet": "PROJET", "libelle": 5}, 400, "'libelle': Input should be a valid string."),
        ({"projet": "PROJET", "start": "yes"}, 400, "'start': Input should be a valid boolean."),
        ({"projet": "PROJET", "libelle": "x" * 201}, 400, "'libelle': String should have at most 200 characters."),
        ({"projet": "PROJET", "libelle": "a\x00b"}, 400, "NUL"),
        ({"projet": "PROJET", "etat": "terminee"}, 400, "Unknown field: 'etat'."),
        ({"projet": "PROJET", "owner": "me"}, 400, "'owner': Input should be a valid integer."),
    ],
)
def test_bad_creation_bodies_are_clear_errors_and_create_nothing(alice, projet, body, status, text):
    if isinstance(body, dict) and body.get("projet") == "PROJET":
        body = {**body, "projet": projet.pk}
    assert_error(post(alice, "/api/fiches/", body), status, text)
    assert not FicheTemps.objects.exists()


def test_create_on_an_inactive_project_is_400(alice):
    closed = Projet.objects.create(designation="Fermé", actif=False)
    assert_error(post(alice, "/api/fiches/", {"projet": closed.pk}), 400, "is not active")


def test_create_for_someone_else_needs_staff(alice, staff, projet, other_user):
    assert_error(post(alice, "/api/fiches/", {"projet": projet.pk, "owner": other_user.pk}), 403, "Only staff")
    response = post(signed_in(staff), "/api/fiches/", {"projet": projet.pk, "owner": other_user.pk})
    assert response.status_code == 201
    assert response.json()["owner"]["id"] == other_user.pk
    assert_error(post(signed_in(staff), "/api/fiches/", {"projet": projet.pk, "owner": 4242}), 400, "does not exist")


def test_detail(alice, projet, user, other_user):
    mine = running_fiche(projet, user)
    theirs = running_fiche(projet, other_user)
    assert alice.get(f"/api/fiches/{mine.pk}/").json()["id"] == mine.pk
    assert_error(alice.get(f"/api/fiches/{theirs.pk}/"), 404, f"Fiche {theirs.pk} does not exist.")
    assert_error(alice.get("/api/fiches/424242/"), 404, "does not exist")
    assert_error(alice.get("/api/fiches/99999999999999999999999/"), 404, "No API endpoint")
    assert_error(alice.get("/api/fiches/abc/"), 404, "No API endpoint")


def test_pause_start_finish(alice, projet, user):
    fiche = running_fiche(projet, user)
    elapse(0.01)
    paused = post(alice, f"/api/fiches/{fiche.pk}/pause").json()
    assert paused["etat"] == "en_pause"
    assert paused["temps_impute"] == paused["temps_live"] >= 0.01
    assert post(alice, f"/api/fiches/{fiche.pk}/start").json()["etat"] == "en_calcul"
    assert post(alice, f"/api/fiches/{fiche.pk}/finish").json()["etat"] == "terminee"


def test_refused_transitions_are_409_and_change_nothing(alice, projet, user):
    fiche = make_fiche(projet, user)
    before = FicheTemps.objects.filter(pk=fiche.pk).values().get()
    assert_error(post(alice, f"/api/fiches/{fiche.pk}/pause"), 409, f"Cannot pause fiche {fiche.pk}: it is paused.")
    assert FicheTemps.objects.filter(pk=fiche.pk).values().get() == before


def test_someone_elses_fiche_cannot_be_moved(alice, projet, other_user):
    theirs = running_fiche(projet, other_user)
    for action in ("pause", "finish", "start"):
        assert_error(post(alice, f"/api/fiches/{theirs.pk}/{action}"), 404, "does not exist")
    assert FicheTemps.objects.get(pk=theirs.pk).etat == Etat.EN_CALCUL


def test_transitions_take_no_body_fields(alice, projet, user):
    fiche = running_fiche(projet, user)
    assert_error(
        post(alice, f"/api/fiches/{fiche.pk}/pause", {"temps_impute": 0}), 400, "Unknown field: 'temps_impute'."
    )


@pytest.mark.parametrize(
    "method, url, allowed",
    [
        ("get", "/api/fiches/1/pause", "POST"),
        ("delete", "/api/fiches/1/", "GET"),
        ("put", "/api/fiches/", "GET, POST"),
        ("post", "/api/fiches/stream", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow(alice, method, url, allowed):
    response = getattr(alice, method)(url)
    assert_error(response, 405, f"Method {method.upper()} is not allowed here")
    assert response["Allow"] == allowed


def test_unknown_endpoint_is_404_json(alice):
    assert_error(alice.get("/api/nothing/here"), 404, "No API endpoint at /api/nothing/here.")
    assert_error(alice.post("/api/fiches/1/explode"), 404, "No API endpoint")
    # Without a CSRF cookie, as a script with a token posts: still a 404, not a CSRF failure.
    strict = Client(enforce_csrf_checks=True)
    assert_error(strict.post("/api/fiches/99999999999999999999/start"), 404, "No API endpoint")
    assert_error(strict.put("/api/nothing"), 404, "No API endpoint")


def test_unsafe_methods_need_the_csrf_token(user, projet):
    fiche = running_fiche(projet, user)
    client = signed_in(user, enforce_csrf_checks=True)
    assert_error(post(client, f"/api/fiches/{fiche.pk}/pause"), 403, "CSRF verification failed")
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_CALCUL
    token = client.get("/api/csrf").json()["csrfToken"]
    assert post(client, f"/api/fiches/{fiche.pk}/pause", HTTP_X_CSRFTOKEN=token).status_code == 200


def test_login_and_logout(user):
    client = Client()
    assert_error(post(client, "/api/login", {"username": "alice", "password": "wrong"}), 401, "Wrong username")
    assert_error(post(client, "/api/login", {"username": "alice"}), 400, "required")
    response = post(client, "/api/login", {"username": "alice", "password": "x"})
    assert response.json() == {"id": user.pk, "username": "alice", "is_staff": False}
    assert client.get("/api/fiches/").status_code == 200
    assert post(client, "/api/logout").status_code == 200
    assert client.get("/api/fiches/").status_code == 401


@pytest.mark.parametrize("ending", list(SESSION_ENDINGS))
def test_a_session_ends_when_its_user_changes_password_or_is_deactivated(alice, user, ending):
    assert alice.get("/api/fiches/").status_code == 200
    SESSION_ENDINGS[ending](user)
    assert_error(alice.get("/api/fiches/"), 401, "Authentication required")


def test_the_stream_under_wsgi_answers_a_clear_error_instead_of_hanging(alice):
    assert_error(alice.get("/api/fiches/stream"), 501, "needs the ASGI server")


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("post", "/api/fiches/", '{"projet": 1e400}'),
        ("post", "/api/fiches/", '{"projet": null, "libelle": null}'),
        ("post", "/api/fiches/", '"just a string"'),
        ("post", "/api/fiches/", "null"),
        ("post", "/api/fiches/", '{"projet": -1}'),
        ("post", "/api/fiches/", '{"projet": 1.5}'),
        ("post", "/api/fiches/1/pause", "{"),
        ("get", "/api/fiches/?projet=1e3&owner=-0", None),
        ("get", "/api/fiches/?etat=" + "x" * 10000, None),
        ("get", "/api/fiches/%ff/", None),
        ("get", "/api/fiches/?page_size=%F0%9F%92%A9", None),
    ],
)
def test_no_malformed_input_is_a_500(alice, projet, user, method, url, body):
    running_fiche(projet, user)
    if body is None:
        response = getattr(alice, method)(url)
    else:
        response = post(alice, url, body)
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


def test_the_openapi_schema_describes_every_operation_and_its_errors():
    schema = Client().get("/api/openapi.json").json()
    operations = {
        (method.upper(), path): operation
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    assert ("GET", "/api/fiches/") in operations
    assert ("POST", "/api/fiches/{fiche_id}/pause") in operations
    for operation in operations.values():
        responses = operation["responses"]
        for status in ("400", "401", "403", "404", "415", "429"):
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/Error"), (
                operation["operationId"],
                status,
            )
    assert {"BearerToken", "Session"} <= set(schema["components"]["securitySchemes"])


def test_the_docs_are_served_with_their_own_static_files():
    page = Client().get("/api/docs").content.decode()
    assert "swagger-ui-bundle.js" in page
    assert "cdn.jsdelivr" not in page


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data", b'{"projet": 1}'),
        ("text/plain", b'{"projet": 1}'),
        ("application/x-www-form-urlencoded", b"projet=1"),
    ],
)
def test_a_body_that_is_not_json_is_415(alice, projet, content_type, body):
    response = alice.post("/api/fiches/", body, content_type=content_type)
    assert_error(response, 415, "The body must be JSON")
    assert not FicheTemps.objects.exists()


def test_a_start_refused_by_the_limit_is_409_with_the_running_fiche(alice, projet, user, settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1
    running = running_fiche(projet, user)
    other = make_fiche(projet, user)
    response = post(alice, f"/api/fiches/{other.pk}/start")
    assert_error(response, 409, f"Fiche {running.pk} is already running")
    assert response.json()["running_fiche_id"] == running.pk


def test_switch_through_the_api(alice, projet, user, settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1
    running = running_fiche(projet, user)
    other = make_fiche(projet, user)
    body = post(alice, f"/api/fiches/{running.pk}/switch", {"to": other.pk}).json()
    assert (body["paused"]["etat"], body["started"]["etat"]) == ("en_pause", "en_calcul")
    started_at = datetime.fromisoformat(body["started"]["en_calcul_depuis"])
    assert started_at == FicheEvent.objects.filter(fiche_id=running.pk).last().at
    assert_error(post(alice, f"/api/fiches/{running.pk}/switch", {"to": other.pk}), 409, "Cannot switch from")
    assert_error(post(alice, f"/api/fiches/{running.pk}/switch", {}), 400, "'to': Field required.")


def test_pause_at_an_earlier_instant_through_the_api(alice, projet, user):
    fiche = running_fiche(projet, user)
    elapse(0.05)
    at = FicheTemps.objects.get(pk=fiche.pk).en_calcul_depuis + timedelta(milliseconds=20)
    body = post(alice, f"/api/fiches/{fiche.pk}/pause", {"at": at.isoformat()}).json()
    assert body["temps_impute"] == 0.02
    assert_error(post(alice, f"/api/fiches/{fiche.pk}/finish", {"at": "2026-01-01T00:00:00"}), 400, "Fiche")
    assert_error(post(alice, f"/api/fiches/{fiche.pk}/pause", {"at": "yesterday"}), 400, "'at'")


def test_the_operation_ids_clients_generate_code_from_do_not_move_with_the_code(client):
    schema = client.get("/api/openapi.json").json()
    ids = {operation["operationId"] for path in schema["paths"].values() for operation in path.values()}
    assert {
        "timesheet_api_list_fiches",
        "timesheet_api_create_fiche",
        "timesheet_api_report",
        "timesheet_api_csrf",
    } <= ids
    assert all(operation_id.startswith("timesheet_api_") for operation_id in ids)


@pytest.mark.parametrize("at", ["2026-01-01T10:00:00+99:00", "2026-02-30T10:00:00+01:00", "0001-01-01T00:30:00+01:00"])
def test_a_stop_instant_out_of_range_is_refused_in_the_products_words(alice, projet, user, at):
    fiche = running_fiche(projet, user)
    response = post(alice, f"/api/fiches/{fiche.pk}/pause", {"at": at})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "offset must be a timedelta" not in error and "out of range" not in error
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_CALCUL


# Requests signed by a bearer token alone: past the session's middleware, no trip to a thread ------------


def through_the_async_stack(*requests, raise_request_exception=True):
    """Each (method, path, headers, body) through Django's async handler, as uvicorn serves it; return the responses."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    async def scenario():
        client = AsyncClient(raise_request_exception=raise_request_exception)
        responses = []
        for method, path, headers, body in requests:
            kwargs = {"headers": headers}
            if method in ("post", "put", "patch"):
                kwargs.update(data=body, content_type=headers.pop("Content-Type", "application/json"))
            responses.append(await getattr(client, method)(path, **kwargs))
        return responses

    return async_to_sync(scenario)()


@pytest.fixture
def middleware_hops(monkeypatch):
    """How many times a middleware of MIDDLEWARE ran on its own (Django sends each to the request's thread)."""
    from django.utils.deprecation import MiddlewareMixin

    hops = []
    real = MiddlewareMixin.__acall__

    async def counted(self, request):
        hops.append(type(self).__name__)
        return await real(self, request)

    monkeypatch.setattr(MiddlewareMixin, "__acall__", counted)
    return hops


@pytest.fixture
def write_token(user):
    from timesheet.domain import tokens
    from timesheet.models import ApiToken

    return tokens.create_token(user=user, name="script", scope=ApiToken.Scope.WRITE)[1]


def without_clock(content):
    """A response's body without the database's now, which moves between two requests."""
    try:
        data = json.loads(content)
    except ValueError:
        return content
    return {key: value for key, value in data.items() if key != "server_time"} if isinstance(data, dict) else data


STRAY_SESSION = "sessionid=not-a-session"  # any session cookie sends a request down MIDDLEWARE's whole way


def test_a_token_alone_skips_the_session_middleware_and_a_session_cookie_does_not(
    middleware_hops, projet, user, write_token
):
    running_fiche(projet, user)
    bearer = {"Authorization": f"Bearer {write_token}"}
    [alone] = through_the_async_stack(("get", "/api/fiches/", dict(bearer), None))
    assert alone.status_code == 200 and alone.json()["count"] == 1
    assert middleware_hops == []
    [with_cookie] = through_the_async_stack(("get", "/api/fiches/", {**bearer, "Cookie": STRAY_SESSION}, None))
    assert with_cookie.json()["count"] == 1
    assert "SessionMiddleware" in middleware_hops


HEADERS_KEPT = (
    "Content-Type",
    "Content-Language",
    "Vary",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
    "Allow",
)


@pytest.mark.parametrize(
    "method, path, headers, body",
    [
        ("get", "/api/fiches/", {}, None),
        ("get", "/api/fiches/999999/", {"Accept-Language": "fr"}, None),  # the error in the asked language
        ("get", "/api/fiches/?page=0", {}, None),
        ("post", "/api/fiches/", {"Content-Type": "text/plain"}, "x"),  # 415 before anything reads it
        ("post", "/api/fiches/", {}, "{"),
        ("put", "/api/fiches/", {}, "{}"),  # a JSON 405
        ("head", "/api/fiches/", {}, None),
        ("post", "/api/tokens/", {}, "{}"),  # session only: the same 401 and hint
        ("get", "/api/no-such-thing", {}, None),
    ],
)
def test_a_token_alone_is_answered_as_down_the_whole_middleware(user, write_token, method, path, headers, body):
    bearer = {"Authorization": f"Bearer {write_token}"}
    alone, whole = through_the_async_stack(
        (method, path, {**bearer, **headers}, body),
        (method, path, {**bearer, **headers, "Cookie": STRAY_SESSION}, body),
    )
    assert (alone.status_code, without_clock(alone.content)) == (whole.status_code, without_clock(whole.content))
    assert {name: alone.get(name) for name in HEADERS_KEPT} == {name: whole.get(name) for name in HEADERS_KEPT}
    assert alone.get("X-Frame-Options") == "DENY" and alone.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize(
    "middleware, hook",
    [
        ("django.middleware.locale.LocaleMiddleware", "process_response"),
        ("django.middleware.common.CommonMiddleware", "process_request"),
    ],
)
def test_a_middleware_that_fails_is_answered_as_down_the_whole_middleware(monkeypatch, write_token, middleware, hook):
    monkeypatch.setattr(f"{middleware}.{hook}", failing, raising=False)
    bearer = {"Authorization": f"Bearer {write_token}"}
    alone, whole = through_the_async_stack(
        ("get", "/api/fiches/", dict(bearer), None),
        ("get", "/api/fiches/", {**bearer, "Cookie": STRAY_SESSION}, None),
        raise_request_exception=False,
    )
    assert alone.status_code == whole.status_code == 500
    # The hooks outside the one that failed still ran: their headers are on the 500 too (the security ones'
    # outermost of all).
    assert {name: alone.get(name) for name in HEADERS_KEPT} == {name: whole.get(name) for name in HEADERS_KEPT}
    assert alone.get("X-Content-Type-Options") == "nosniff"


def failing(self, *args):
    raise RuntimeError("a middleware's bug")


def test_a_token_can_still_sign_out_and_sign_in_where_a_session_is_made(user, write_token):
    user.set_password("secret-pass")
    user.save()
    bearer = {"Authorization": f"Bearer {write_token}"}
    signed_out, signed_in_ = through_the_async_stack(
        ("post", "/api/logout", dict(bearer), "{}"),
        ("post", "/api/login", dict(bearer), json.dumps({"username": user.username, "password": "secret-pass"})),
    )
    assert (signed_out.status_code, signed_out.json()) == (200, {})
    assert signed_in_.status_code == 200, signed_in_.content
    assert signed_in_.cookies["sessionid"].value


def test_every_middleware_after_the_token_shortcut_is_called_in_place_or_named_as_skipped(settings):
    from timesheet.web.middleware import INLINE, SKIPPED, JsonApiMiddleware

    after = settings.MIDDLEWARE[settings.MIDDLEWARE.index("timesheet.web.middleware.TokenApiShortcut") + 1 :]
    inline = [f"{m.__module__}.{m.__qualname__}" for m in (*INLINE, JsonApiMiddleware)]
    # A middleware added to MIDDLEWARE must be placed in one or the other, in MIDDLEWARE's order.
    assert [path for path in after if path not in SKIPPED] == inline
