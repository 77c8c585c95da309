"""
The API's weekly time sheets: a person submits and withdraws their week, a
lead of their team approves or rejects it, everyone lists the weeks they may
see, and a submitted or approved week holds its time against the entries'
routes. Every week is one of November 2026, with entries added through the
domain: nothing depends on today's date or the time of day.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.factories import person, team
from tests.support import signed_in
from timesheet.domain import entries, tokens
from timesheet.models import ApiToken, Notification, NotificationKind, WeekSheet

pytestmark = pytest.mark.django_db

# Monday 9 to Sunday 15, Monday 16 to Sunday 22, Monday 23 to Sunday 29 November 2026.
W46, W47, W48 = "2026-W46", "2026-W47", "2026-W48"
PATHS = ("submit", "withdraw", "approve", "reject")


def at(day, hour, minute=0):
    """An instant of November 2026, mid-day everywhere the site's people are: on that day in their zone."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def work(owner, projet, day, hours):
    """``hours`` of the owner's time on ``day`` of November 2026, from 09:00 UTC, added through the domain."""
    entries.add_entry(actor=owner, projet_id=projet.pk, start=at(day, 9), end=at(day, 9) + timedelta(hours=hours))


def act(client, owner, week, action, body=None, **extra):
    """POST /api/timesheets/<owner>/<week>/<action> with ``body`` as JSON (none: an empty object)."""
    return client.post(
        f"/api/timesheets/{owner.pk}/{week}/{action}", json.dumps(body or {}), content_type="application/json", **extra
    )


def assert_refused(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == code, response.json()
    assert response.json()["error"]


def listing(client, query):
    response = client.get(f"/api/timesheets/?{query}")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def lea(user):
    """The lead of alice's team."""
    lead = person("lea")
    team("Design", members=[user], leads=[lead])
    return lead


@pytest.fixture
def lead_client(lea):
    return signed_in(lea)


@pytest.fixture
def submitted(alice, user, projet):
    """Alice's week 2026-W46, two hours on Tuesday 10 November, submitted by her."""
    work(user, projet, 10, 2)
    response = act(alice, user, W46, "submit")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_lead_approves_a_week_after_the_owner_withdrew_and_mended_a_rejected_one(
    alice, user, projet, lea, lead_client
):
    work(user, projet, 10, 2)

    submitted = act(alice, user, W46, "submit")

    assert submitted.status_code == 200, submitted.content
    row = submitted.json()
    assert row == {
        **row,
        "owner": user.pk,
        "week": W46,
        "first_day": "2026-11-09",
        "state": "submitted",
        "seconds": 7200.0,
        "decided_at": None,
        "decided_by": None,
        "reason": "",
    }
    assert row["submitted_at"] is not None
    assert Notification.objects.filter(recipient=lea, kind=NotificationKind.WEEK_SUBMITTED).exists()

    withdrawn = act(alice, user, W46, "withdraw")
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "open"
    work(user, projet, 11, 1)
    assert act(alice, user, W46, "submit").json()["seconds"] == 3 * 3600.0

    rejected = act(lead_client, user, W46, "reject", {"reason": "Friday is missing."})
    assert rejected.status_code == 200, rejected.content
    assert rejected.json() == {
        **rejected.json(),
        "state": "rejected",
        "reason": "Friday is missing.",
        "decided_by": lea.pk,
    }
    assert rejected.json()["decided_at"] is not None
    assert Notification.objects.filter(recipient=user, kind=NotificationKind.WEEK_REJECTED).exists()

    work(user, projet, 13, 4)
    again = act(alice, user, W46, "submit").json()
    assert again == {**again, "state": "submitted", "seconds": 7 * 3600.0, "reason": "", "decided_by": None}

    approved = act(lead_client, user, W46, "approve")
    assert approved.status_code == 200, approved.content
    assert approved.json() == {**approved.json(), "state": "approved", "seconds": 7 * 3600.0, "decided_by": lea.pk}
    assert WeekSheet.objects.get(owner=user, week=W46).state == WeekSheet.State.APPROVED
    assert Notification.objects.filter(recipient=user, kind=NotificationKind.WEEK_APPROVED).exists()
    assert_refused(act(alice, user, W46, "withdraw"), 409, "wrong_state")


def test_someone_who_sees_the_week_but_does_not_lead_the_persons_team_is_forbidden_to_decide_it(user, submitted):
    viewer = person("vic")  # sees everyone's fiches, leads no team
    viewer.user_permissions.set(Permission.objects.filter(codename="view_fichetemps"))
    for action, body in (("approve", None), ("reject", {"reason": "No."})):
        assert_refused(act(signed_in(viewer), user, W46, action, body), 403, "forbidden")
    assert WeekSheet.objects.get(owner=user, week=W46).state == WeekSheet.State.SUBMITTED


def test_nobody_decides_their_own_week_without_the_permission_to(alice, user, lea, submitted):
    assert_refused(act(alice, user, W46, "approve"), 403, "forbidden")
    assert_refused(act(alice, user, W46, "reject", {"reason": "Mine."}), 403, "forbidden")
    assert WeekSheet.objects.get(owner=user, week=W46).state == WeekSheet.State.SUBMITTED


def test_a_teammate_who_is_not_a_lead_is_told_the_week_does_not_exist(user, lea, submitted):
    mate = person("max")
    team("Design bis", members=[user, mate])
    assert_refused(act(signed_in(mate), user, W46, "approve"), 404, "not_found")
    assert WeekSheet.objects.get(owner=user, week=W46).state == WeekSheet.State.SUBMITTED


def test_only_the_owner_submits_and_withdraws_their_week(user, projet, lea, lead_client, submitted):
    work(user, projet, 17, 1)
    assert_refused(act(lead_client, user, W47, "submit"), 403, "forbidden")
    assert_refused(act(lead_client, user, W46, "withdraw"), 403, "forbidden")


def test_approving_a_week_never_submitted_is_409_wrong_state(user, projet, lea, lead_client):
    work(user, projet, 10, 2)
    assert_refused(act(lead_client, user, W46, "approve"), 409, "wrong_state")
    assert not WeekSheet.objects.exists()


def test_submitting_a_submitted_week_or_withdrawing_an_open_one_is_409_wrong_state(alice, user, submitted):
    assert_refused(act(alice, user, W46, "submit"), 409, "wrong_state")
    assert_refused(act(alice, user, W47, "withdraw"), 409, "wrong_state")


def test_an_entry_in_a_submitted_week_is_409_submitted_and_in_an_approved_week_409_locked(
    alice, user, projet, lea, lead_client, submitted
):
    body = {"projet": projet.pk, "start": at(11, 13).isoformat(), "end": at(11, 14).isoformat()}

    assert_refused(alice.post("/api/entries/", body, content_type="application/json"), 409, "submitted")
    assert act(lead_client, user, W46, "approve").status_code == 200
    assert_refused(alice.post("/api/entries/", body, content_type="application/json"), 409, "locked")
    assert listing(alice, f"owner={user.pk}&from=2026-11-09&to=2026-11-09")[0]["seconds"] == 7200.0


def test_a_rejection_needs_a_reason(user, lea, lead_client, submitted):
    missing = act(lead_client, user, W46, "reject")
    assert missing.status_code == 400 and "'reason'" in missing.json()["error"], missing.content
    assert_refused(act(lead_client, user, W46, "reject", {"reason": "   "}), 400, "invalid")
    assert WeekSheet.objects.get(owner=user, week=W46).state == WeekSheet.State.SUBMITTED


@pytest.mark.parametrize("week", ["2026-W99", "abc", "2026-W5", "2026-w46", "0001-W01"])
@pytest.mark.parametrize("action", PATHS)
def test_a_malformed_week_is_400_invalid(alice, user, lead_client, action, week):
    client = alice if action in ("submit", "withdraw") else lead_client
    assert_refused(act(client, user, week, action, {"reason": "No."} if action == "reject" else None), 400, "invalid")


def test_a_week_not_begun_cannot_be_submitted(alice, user):
    assert_refused(act(alice, user, "9000-W01", "submit"), 400, "invalid")


def test_listing_a_persons_weeks_includes_open_ones_with_their_live_seconds(alice, user, projet, lea, lead_client):
    work(user, projet, 10, 2)
    work(user, projet, 17, 3)
    assert act(alice, user, W46, "submit").status_code == 200
    query = f"owner={user.pk}&from=2026-11-09&to=2026-11-29"

    weeks = listing(alice, query)

    assert [(w["week"], w["state"], w["seconds"]) for w in weeks] == [
        (W48, "open", 0.0),
        (W47, "open", 3 * 3600.0),
        (W46, "submitted", 2 * 3600.0),
    ]
    assert weeks[-1]["first_day"] == "2026-11-09" and weeks[-1]["submitted_at"] is not None
    assert weeks[0] == {
        "owner": user.pk,
        "week": W48,
        "first_day": "2026-11-23",
        "state": "open",
        "seconds": 0.0,
        "submitted_at": None,
        "submissions": 0,
        "decided_at": None,
        "decided_by": None,
        "reason": "",
    }
    work(user, projet, 18, 1)
    assert [w["seconds"] for w in listing(alice, query + "&state=open")] == [0.0, 4 * 3600.0]
    assert [w["week"] for w in listing(lead_client, query + "&state=submitted")] == [W46]


def test_listing_someone_elses_weeks_needs_to_lead_them(user, other_user):
    assert_refused(signed_in(other_user).get(f"/api/timesheets/?owner={user.pk}"), 403, "forbidden")


@pytest.mark.parametrize(
    "query, code",
    [
        ("state=closed", "invalid"),
        ("owner={owner}&state=draft", "invalid"),
        ("owner={owner}&from=2026-11-30&to=2026-11-01", "invalid"),
        ("owner={owner}&from=2020-01-01&to=2026-11-30", "invalid"),
    ],
)
def test_a_bad_listing_is_400_invalid(alice, user, query, code):
    assert_refused(alice.get("/api/timesheets/?" + query.format(owner=user.pk)), 400, code)


@pytest.mark.parametrize(
    "query, field",
    [("from=2026-13-01", "'from'"), ("to=yesterday", "'to'"), ("to=0", "'to'"), ("owner=abc", "'owner'")],
)
def test_a_malformed_parameter_is_400_naming_it(alice, query, field):
    response = alice.get("/api/timesheets/?" + query)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]


def test_listing_without_owner_shows_only_the_sheets_the_caller_may_see(
    alice, user, other_user, projet, lea, lead_client
):
    bob = signed_in(other_user)
    for owner, client in ((user, alice), (other_user, bob)):
        work(owner, projet, 10, 2)
        assert act(client, owner, W46, "submit").status_code == 200
    work(user, projet, 17, 1)  # an open week: never submitted, not listed without owner

    assert [(w["owner"], w["week"]) for w in listing(alice, "")] == [(user.pk, W46)]
    assert [w["owner"] for w in listing(bob, "")] == [other_user.pk]
    assert [w["owner"] for w in listing(lead_client, "")] == [user.pk]
    assert listing(lead_client, "state=approved") == []
    assert listing(alice, "from=2026-11-16") == []


def test_a_rejected_week_shows_the_same_live_seconds_listed_with_or_without_owner(
    alice, user, projet, lea, lead_client, submitted
):
    assert act(lead_client, user, W46, "reject", {"reason": "Wednesday is missing."}).status_code == 200
    work(user, projet, 11, 1)

    with_owner = listing(alice, f"owner={user.pk}&from=2026-11-09&to=2026-11-09")
    without_owner = listing(alice, "")

    assert with_owner[0]["seconds"] == 3 * 3600.0
    assert without_owner == with_owner


def test_a_report_of_approved_time_counts_only_the_approved_weeks(alice, user, projet, lea, lead_client):
    work(user, projet, 10, 2)  # W46: approved
    work(user, projet, 17, 3)  # W47: submitted
    work(user, projet, 24, 1)  # W48: open
    for week in (W46, W47):
        assert act(alice, user, week, "submit").status_code == 200
    assert act(lead_client, user, W46, "approve").status_code == 200
    query = "/api/reports/?from=2026-11-09&to=2026-11-29&by=owner&group=week"

    approved = alice.get(query + "&approved=true").json()
    everything = alice.get(query).json()

    assert approved["approved"] is True
    assert approved["totals"]["seconds"] == 2 * 3600.0
    assert [row["seconds"] for row in approved["rows"]] == [2 * 3600.0]
    assert everything["totals"]["seconds"] == 6 * 3600.0


def test_a_read_only_token_lists_the_weeks_but_does_not_submit_them(user, projet):
    work(user, projet, 10, 2)
    _token, read_only = tokens.create_token(
        user=user, name="script", scope=ApiToken.Scope.READ, lifetime=timedelta(days=1)
    )
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {read_only}"}

    weeks = Client().get(f"/api/timesheets/?owner={user.pk}&from=2026-11-09&to=2026-11-09", **bearer).json()
    refused = act(Client(), user, W46, "submit", **bearer)

    assert [w["seconds"] for w in weeks] == [7200.0]
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert not WeekSheet.objects.exists()
    _token, writer = tokens.create_token(user=user, name="w", scope=ApiToken.Scope.WRITE, lifetime=timedelta(days=1))
    assert act(Client(), user, W46, "submit", HTTP_AUTHORIZATION=f"Bearer {writer}").status_code == 200


def test_anonymous_requests_are_401(user):
    assert Client().get("/api/timesheets/").status_code == 401
    assert act(Client(), user, W46, "submit").status_code == 401


def test_the_schema_describes_the_five_paths_and_their_errors(client):
    schema = client.get("/api/openapi.json").json()
    paths = schema["paths"]

    listed = paths["/api/timesheets/"]["get"]
    assert listed["operationId"] == "timesheet_api_list_timesheets" and listed["tags"] == ["timesheets"]
    assert {parameter["name"] for parameter in listed["parameters"]} == {"owner", "from", "to", "state"}
    item = listed["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][item]["properties"]) == {
        "owner",
        "week",
        "first_day",
        "state",
        "seconds",
        "submitted_at",
        "submissions",
        "decided_at",
        "decided_by",
        "reason",
    }
    for action in PATHS:
        operation = paths[f"/api/timesheets/{{owner_id}}/{{week}}/{action}"]["post"]
        assert operation["operationId"] == f"timesheet_api_{action}_week"
        assert operation["summary"] and operation["description"]
        for status in ("400", "401", "403", "404", "409"):
            assert operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    reject = paths["/api/timesheets/{owner_id}/{week}/reject"]["post"]
    body = reject["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema["components"]["schemas"][body]["required"] == ["reason"]


def test_a_decision_names_the_submission_it_looked_at_and_bodies_take_no_other_field(
    alice, user, lead_client, submitted
):
    listed = listing(alice, f"owner={user.pk}&from=2026-11-09&to=2026-11-09")
    assert listed[0]["submissions"] == 1
    assert act(alice, user, W46, "withdraw", {"extra": 1}).status_code == 400
    assert act(alice, user, W46, "withdraw").status_code == 200
    assert act(alice, user, W46, "submit").json()["submissions"] == 2
    stale = act(lead_client, user, W46, "approve", {"submission": 1})
    assert stale.status_code == 409 and stale.json()["code"] == "wrong_state"
    assert act(lead_client, user, W46, "approve", {"submission": 2, "extra": True}).status_code == 400
    assert act(lead_client, user, W46, "approve", {"submission": 2}).json()["state"] == "approved"
