"""
The API's notifications: one's own only, newest first, unread ones alone,
pages going back in time, one or all marked read, bad ids and someone else's
a JSON 404 that changes nothing, and the schema that describes them.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from tests.support import signed_in
from timesheet.core.dbtime import db_now
from timesheet.domain import notifications, tokens
from timesheet.models import ApiToken, Notification, NotificationKind

pytestmark = pytest.mark.django_db


def post(client, url, **kwargs):
    return client.post(url, "{}", content_type="application/json", **kwargs)


def notify(owner, week=45, **fields):
    """A days-without-time notification for ``owner``, about ISO week ``week`` of 2026."""
    return Notification.objects.create(
        recipient=owner,
        kind=fields.pop("kind", NotificationKind.MISSING_TIME),
        subject=f"owner:{owner.pk}",
        occurrence=f"2026-W{week:02d}",
        occurred_at=datetime(2026, 1, 5, 8, tzinfo=UTC) + timedelta(weeks=week),
        payload={"week": f"2026-W{week:02d}", "days": ["2026-11-02"]},
        **fields,
    )


def assert_error(response, status, text=""):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert text in response.json()["error"]


def test_a_person_lists_their_own_notifications_newest_first_never_anothers(alice, user, other_user):
    first, second = notify(user, 44), notify(user, 45, read_at=db_now())
    notify(other_user, 46)
    body = alice.get("/api/notifications/").json()
    assert [item["id"] for item in body] == [second.pk, first.pk]
    item = body[1]
    stored = Notification.objects.get(pk=first.pk)
    assert item == {
        "id": first.pk,
        "kind": "missing_time",
        "title": "Week 2026-W44: 1 working day without time.",
        "occurred_at": stored.occurred_at.isoformat(),
        "created_at": stored.created_at.isoformat(),
        "read_at": None,
        "payload": {"week": "2026-W44", "days": ["2026-11-02"]},
    }
    assert body[0]["read_at"] is not None
    bob = signed_in(other_user).get("/api/notifications/").json()
    assert [item["id"] for item in bob] != [] and first.pk not in {item["id"] for item in bob}


def test_only_the_unread_ones(alice, user):
    unread = notify(user, 44)
    notify(user, 45, read_at=db_now())
    assert [item["id"] for item in alice.get("/api/notifications/?unread=true").json()] == [unread.pk]
    assert len(alice.get("/api/notifications/?unread=false").json()) == 2


def test_pages_go_back_in_time_with_before(alice, user):
    made = [notify(user, week) for week in range(1, 8)]
    newest_first = [n.pk for n in reversed(made)]
    first = alice.get("/api/notifications/?limit=3").json()
    assert [item["id"] for item in first] == newest_first[:3]
    second = alice.get(f"/api/notifications/?limit=3&before={first[-1]['id']}").json()
    assert [item["id"] for item in second] == newest_first[3:6]
    third = alice.get(f"/api/notifications/?limit=3&before={second[-1]['id']}").json()
    assert [item["id"] for item in third] == newest_first[6:]
    assert alice.get(f"/api/notifications/?before={made[0].pk}").json() == []


@pytest.mark.parametrize(
    "query, text",
    [
        ("limit=0", "'limit'"),
        ("limit=201", "'limit'"),
        ("limit=x", "'limit'"),
        ("before=0", "'before'"),
        ("before=-3", "'before'"),
        ("before=abc", "'before'"),
        ("unread=perhaps", "'unread'"),
    ],
)
def test_bad_parameters_are_400(alice, query, text):
    assert_error(alice.get(f"/api/notifications/?{query}"), 400, text)


def test_one_is_marked_read_once(alice, user):
    notification = notify(user)
    response = post(alice, f"/api/notifications/{notification.pk}/read")
    assert response.status_code == 200
    read_at = response.json()["read_at"]
    assert read_at and response.json()["id"] == notification.pk
    assert datetime.fromisoformat(read_at) == Notification.objects.get(pk=notification.pk).read_at
    again = post(alice, f"/api/notifications/{notification.pk}/read").json()
    assert again["read_at"] == read_at  # the first reading's instant stays
    assert alice.get("/api/notifications/?unread=true").json() == []


def test_all_are_marked_read_and_only_ones_own(alice, user, other_user):
    notify(user, 44), notify(user, 45), notify(user, 46, read_at=db_now())
    theirs = notify(other_user, 44)
    assert post(alice, "/api/notifications/read-all").json() == {"read": 2}
    assert post(alice, "/api/notifications/read-all").json() == {"read": 0}
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    assert notifications.unread_count(user=user) == 0


def test_someone_elses_notification_is_a_404_and_unchanged(alice, other_user):
    theirs = notify(other_user)
    response = post(alice, f"/api/notifications/{theirs.pk}/read")
    assert_error(response, 404, f"Notification {theirs.pk} does not exist.")
    assert response.json()["code"] == "not_found"
    assert Notification.objects.get(pk=theirs.pk).read_at is None


@pytest.mark.parametrize(
    "url",
    [
        "/api/notifications/0/read",
        "/api/notifications/999999999/read",
        "/api/notifications/9999999999999999999999/read",
        "/api/notifications/abc/read",
        "/api/notifications/-1/read",
    ],
)
def test_bad_ids_are_json_404s(alice, url):
    assert_error(post(alice, url), 404)


def test_the_methods_are_checked(alice, user):
    notification = notify(user)
    assert alice.get(f"/api/notifications/{notification.pk}/read").status_code == 405
    assert alice.get("/api/notifications/read-all").status_code == 405
    assert post(alice, "/api/notifications/").status_code == 405
    assert Notification.objects.get(pk=notification.pk).read_at is None


def test_anonymous_is_401_and_a_read_only_token_reads_but_does_not_mark(user):
    notification = notify(user)
    assert_error(Client().get("/api/notifications/"), 401)
    assert_error(post(Client(), f"/api/notifications/{notification.pk}/read"), 401)
    _token, read_only = tokens.create_token(
        user=user, name="script", scope=ApiToken.Scope.READ, lifetime=timedelta(days=1)
    )
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {read_only}"}
    assert [item["id"] for item in Client().get("/api/notifications/", **bearer).json()] == [notification.pk]
    assert_error(post(Client(), f"/api/notifications/{notification.pk}/read", **bearer), 403, "read-only")
    _token, writer = tokens.create_token(user=user, name="w", scope=ApiToken.Scope.WRITE, lifetime=timedelta(days=1))
    marked = post(Client(), "/api/notifications/read-all", HTTP_AUTHORIZATION=f"Bearer {writer}")
    assert marked.json() == {"read": 1}


def test_kinds_turned_off_for_the_page_are_left_out_as_on_the_bell(alice, user):
    notify(user, 44)
    notify(user, 45, kind=NotificationKind.END_OF_DAY)
    notifications.set_preferences(user=user, choices={NotificationKind.END_OF_DAY: {"email"}})
    assert [item["kind"] for item in alice.get("/api/notifications/").json()] == ["missing_time"]


def test_titles_follow_the_language_asked(alice, user):
    notify(user)
    english = alice.get("/api/notifications/").json()[0]["title"]
    french = alice.get("/api/notifications/", HTTP_ACCEPT_LANGUAGE="fr").json()[0]["title"]
    assert english.startswith("Week 2026-W45")
    assert french  # the French catalogue's, once it holds this title; never empty


def test_the_schema_describes_the_notifications(client):
    schema = client.get("/api/openapi.json").json()
    paths = schema["paths"]
    listing = paths["/api/notifications/"]["get"]
    assert listing["operationId"] == "timesheet_api_list_notifications"
    assert {parameter["name"] for parameter in listing["parameters"]} == {"unread", "limit", "before"}
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 200, 50)
    item = listing["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][item]["properties"]
    assert set(fields) == {"id", "kind", "title", "occurred_at", "created_at", "read_at", "payload"}
    read = paths["/api/notifications/{notification_id}/read"]["post"]
    assert read["operationId"] == "timesheet_api_read_notification"
    assert read["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    read_all = paths["/api/notifications/read-all"]["post"]
    assert read_all["operationId"] == "timesheet_api_read_all_notifications"
    answer = read_all["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][answer]["properties"]) == {"read"}
    kinds = json.dumps(schema["components"]["schemas"])
    assert all(kind in kinds for kind in NotificationKind.values)
