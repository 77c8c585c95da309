"""
The admin of weekly time sheets: a list of the weeks one may see, each
week's page with its totals as submitted, its comparison and its history,
and the decisions taken through the domain's approve and reject (a reject
asks for its reason on a page of its own), each refusal said as an error.
Nothing is added, edited or deleted there; the profile's first day of the
week is set in the profiles' admin.
"""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission

from tests.factories import make_fiche, person, project, team
from tests.support import STAFF_PERMISSIONS, signed_in
from timesheet.domain import days, fiches, timesheets
from timesheet.models import Profile, WeekSheet
from timesheet.web.admin.timesheets import hours_minutes

pytestmark = pytest.mark.django_db

LIST = "/admin/timesheet/weeksheet/"
State = WeekSheet.State


def granted(user, *codenames):
    """``user`` given the timesheet permissions ``codenames``, read back (no cached permissions)."""
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="timesheet", codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


def submitted_week(owner, adjuster, projet, *, hours=(3, 2), weeks_ago=1):
    """``owner``'s week ``weeks_ago`` weeks back, with ``hours`` on its first days on ``projet``, submitted."""
    week = timesheets.week_of(owner_id=owner.pk, day=days.today_for(owner.pk) - timedelta(days=7 * weeks_ago))
    fiche = make_fiche(projet, owner, "Maquettes", actor=adjuster)
    for offset, amount in enumerate(hours):
        fiches.adjust_fiche(
            fiche_id=fiche.pk,
            actor=adjuster,
            delta=timedelta(hours=amount),
            reason="Saisie de la semaine",
            day=week.first + timedelta(days=offset),
        )
    return timesheets.submit(actor=owner, owner_id=owner.pk, week=week.label)


def act(client, action, sheets, url=LIST, **data):
    """Post ``action`` on ``sheets`` from the list at ``url``; the messages shown after, as (level, text)."""
    response = client.post(url, {"action": action, "_selected_action": [s.pk for s in sheets], **data}, follow=True)
    return response, [(message.level_tag, str(message)) for message in response.context["messages"]]


def state_of(sheet):
    return WeekSheet.objects.get(pk=sheet.pk).state


@pytest.fixture
def refonte(db):
    return project("Refonte")


@pytest.fixture
def week(user, superuser, refonte):
    """alice's last week, 5 hours on Refonte, submitted."""
    return submitted_week(user, superuser, refonte)


@pytest.fixture
def lead(db, user):
    """dave, staff who may view weeks, leads alice's team (of which bob is not a member)."""
    dave = person("dave", is_staff=True)
    team("Design", members=[user], leads=[dave])
    return granted(dave, "view_weeksheet")


# Decisions -------------------------------------------------------------------------------


def test_the_approve_action_approves_through_the_domain(superuser_client, superuser, week):
    _response, shown = act(superuser_client, "approve", [week])

    assert shown == [("success", "1 week approved.")]
    sheet = WeekSheet.objects.get(pk=week.pk)
    assert (sheet.state, sheet.decided_by, sheet.history[-1]["state"]) == (State.APPROVED, superuser, State.APPROVED)


def test_approving_applies_to_each_week_it_may_and_says_why_not_for_the_others(
    superuser_client, week, other_user, superuser, refonte
):
    bobs = submitted_week(other_user, superuser, refonte)
    timesheets.approve(actor=superuser, owner_id=other_user.pk, week=bobs.week)

    _response, shown = act(superuser_client, "approve", [week, bobs])

    assert ("success", "1 week approved.") in shown
    assert ("error", f"bob {bobs.week}: Week {bobs.week} is approved: it cannot be approved.") in shown
    assert len(shown) == 2
    assert state_of(week) == State.APPROVED


def test_reject_asks_for_the_reason_then_rejects_with_it(superuser_client, superuser, week):
    page, shown = act(superuser_client, "reject", [week])

    assert page.status_code == 200 and shown == []
    assert page.templates[0].name == "admin/timesheet/weeksheet/reject.html"
    assert "alice" in page.content.decode() and week.week in page.content.decode()
    assert state_of(week) == State.SUBMITTED

    _response, shown = act(superuser_client, "reject", [week], post="yes", reason="  Mardi manque.  ")

    assert shown == [("success", "1 week rejected.")]
    sheet = WeekSheet.objects.get(pk=week.pk)
    assert (sheet.state, sheet.reason, sheet.decided_by) == (State.REJECTED, "Mardi manque.", superuser)
    assert sheet.history[-1] == {**sheet.history[-1], "state": State.REJECTED, "reason": "Mardi manque."}


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_reject_without_a_reason_changes_nothing(superuser_client, week, reason):
    page, shown = act(superuser_client, "reject", [week], post="yes", reason=reason)

    assert page.status_code == 200 and shown == []
    assert page.context["form"].errors == {"reason": ["This field is required."]}
    sheet = WeekSheet.objects.get(pk=week.pk)
    assert (sheet.state, sheet.reason, len(sheet.history)) == (State.SUBMITTED, "", 1)


def test_staff_who_neither_approve_nor_lead_are_offered_no_decision_and_nothing_changes(week):
    carol = person("carol", is_staff=True)
    carol = granted(carol, *STAFF_PERMISSIONS, "view_weeksheet")
    client = signed_in(carol)
    page = client.get(LIST)
    assert page.context["cl"].result_count == 1  # carol sees everyone's fiches, so their weeks
    assert page.context["action_form"] is None  # no action offered

    for action in ("approve", "reject"):
        act(client, action, [week], post="yes", reason="Non.")
    sheet = WeekSheet.objects.get(pk=week.pk)
    assert (sheet.state, sheet.decided_by, len(sheet.history)) == (State.SUBMITTED, None, 1)


def test_ones_own_week_is_approved_only_with_the_permission_to(superuser, refonte):
    erin = granted(person("erin", is_staff=True), "approve_weeksheet")
    own = submitted_week(erin, superuser, refonte)
    client = signed_in(erin)

    _response, shown = act(client, "approve", [own])

    assert shown == [("error", f"erin {own.week}: Deciding one's own week needs the permission to.")]
    assert state_of(own) == State.SUBMITTED

    erin = granted(erin, "approve_own_weeksheet")
    _response, shown = act(signed_in(erin), "approve", [own])

    assert shown == [("success", "1 week approved.")]
    assert state_of(own) == State.APPROVED


def test_a_lead_decides_the_weeks_of_their_teams_members(lead, week):
    _response, shown = act(signed_in(lead), "approve", [week])

    assert shown == [("success", "1 week approved.")]
    assert WeekSheet.objects.get(pk=week.pk).decided_by == lead


# Who sees what ------------------------------------------------------------------------------


def test_the_list_shows_only_the_weeks_one_may_see(lead, week, other_user, superuser, refonte):
    bobs = submitted_week(other_user, superuser, refonte)
    client = signed_in(lead)

    listed = client.get(LIST).context["cl"].result_list

    assert [sheet.pk for sheet in listed] == [week.pk]
    assert client.get(f"{LIST}{bobs.pk}/change/").status_code == 302  # "does not exist": back to the index
    _response, shown = act(client, "approve", [bobs])
    assert shown[-1] == ("warning", "None of the selected weeks is in this list.")
    assert state_of(bobs) == State.SUBMITTED


def test_without_the_permission_to_view_or_approve_weeks_the_admin_is_closed(week):
    staff = signed_in(person("frank", is_staff=True))

    assert staff.get(LIST).status_code == 403
    assert staff.get(f"{LIST}{week.pk}/change/").status_code == 403
    assert "weeksheet" not in staff.get("/admin/").content.decode()


def test_the_list_shows_each_weeks_columns_longest_waiting_first(superuser_client, superuser, user, refonte):
    older = submitted_week(user, superuser, refonte, weeks_ago=2)
    newer = submitted_week(user, superuser, refonte, weeks_ago=1, hours=(1,))
    approved = submitted_week(user, superuser, refonte, weeks_ago=3)
    timesheets.approve(actor=superuser, owner_id=user.pk, week=approved.week)

    response = superuser_client.get(LIST)
    page = response.content.decode()

    assert [sheet.pk for sheet in response.context["cl"].result_list] == [older.pk, newer.pk, approved.pk]
    assert 'class="etat week-state week-state-submitted"' in page
    assert 'class="etat week-state week-state-approved"' in page
    assert "5:00" in page and "1:00" in page
    assert "Waiting for my decision (2)" in page


def test_the_lists_filters_by_state_and_team_and_searches_by_person(
    superuser_client, superuser, user, other_user, refonte, week
):
    bobs = submitted_week(other_user, superuser, refonte)
    timesheets.approve(actor=superuser, owner_id=other_user.pk, week=bobs.week)
    design = team("Design", members=[other_user])

    def listed(query):
        response = superuser_client.get(f"{LIST}?{query}")
        assert response.status_code == 200
        return {sheet.pk for sheet in response.context["cl"].result_list}

    assert listed("state__exact=approved") == {bobs.pk}
    assert listed(f"team={design.pk}") == {bobs.pk}
    assert listed("q=alice") == {week.pk}


# The queue ----------------------------------------------------------------------------------


def test_the_queue_holds_the_weeks_one_may_decide_with_their_totals(lead, week, superuser, refonte):
    own = submitted_week(lead, superuser, refonte, hours=(1,))
    client = signed_in(lead)

    response = client.get(f"{LIST}?decision=mine")
    page = response.content.decode()

    assert [sheet.pk for sheet in response.context["cl"].result_list] == [week.pk]  # not dave's own week
    assert own.pk not in [sheet.pk for sheet in response.context["cl"].result_list]
    assert "Refonte" in page and "3:00" in page and "2:00" in page and "5:00" in page
    assert "no usual week yet" in page
    assert '<option value="approve">' in page and '<option value="reject">' in page

    response, shown = act(client, "approve", [week], url=f"{LIST}?decision=mine")

    assert shown == [("success", "1 week approved.")]
    assert response.context["cl"].result_count == 0


def test_the_queue_row_says_how_the_week_compares_and_what_changed(superuser_client, superuser, user, refonte):
    submitted_week(user, superuser, refonte, weeks_ago=2, hours=(4,))  # the usual week: 4 hours
    timesheets.approve(actor=superuser, owner_id=user.pk, week=WeekSheet.objects.get().week)
    week = submitted_week(user, superuser, refonte)  # 5 hours
    timesheets.withdraw(actor=user, owner_id=user.pk, week=week.week)
    fiche = fiches.create_fiche(projet_id=refonte.pk, owner_id=user.pk, actor=superuser, libelle="Relecture")
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=superuser, delta=timedelta(minutes=30), reason="x", day=week.first_day)
    timesheets.submit(actor=user, owner_id=user.pk, week=week.week)

    page = superuser_client.get(f"{LIST}?decision=mine").content.decode()

    assert "+1:30 on the usual 4:00" in page
    assert "2 changes since the previous submission" in page


# The week's page --------------------------------------------------------------------------


def test_the_weeks_page_shows_its_totals_comparison_and_history(superuser_client, superuser, user, refonte, week):
    timesheets.withdraw(actor=user, owner_id=user.pk, week=week.week)
    other = project("Support")
    fiche = make_fiche(other, user, "Tickets", actor=superuser)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=superuser, delta=timedelta(minutes=45), reason="x", day=week.first_day)
    timesheets.submit(actor=user, owner_id=user.pk, week=week.week)
    timesheets.reject(actor=superuser, owner_id=user.pk, week=week.week, reason="Le <b>mardi</b> manque.")

    response = superuser_client.get(f"{LIST}{week.pk}/change/")
    page = response.content.decode()

    assert response.status_code == 200
    first = week.first_day
    assert f"{first:%Y-%m-%d}" in page and f"{first + timedelta(days=6):%Y-%m-%d}" in page
    assert "3:45" in page and "2:00" in page and "5:45" in page  # each day, and the week
    assert "Refonte" in page and "Support" in page and "0:45" in page  # each project
    assert "+0:45" in page  # what changed since the first submission
    assert "No time in the 4 weeks before" in page
    history = response.context["adminform"].form.instance.history
    assert [entry["state"] for entry in history] == ["submitted", "open", "submitted", "rejected"]
    assert page.count("week-state-submitted") >= 2 and "week-state-rejected" in page
    assert "Le &lt;b&gt;mardi&lt;/b&gt; manque." in page and "<b>mardi</b>" not in page
    assert ">root<" in page and ">alice<" in page
    assert "Approve" not in page.split('id="weeksheet_form"')[0]  # rejected: nothing to decide


def test_a_submitted_weeks_page_offers_the_decisions_to_those_who_may(superuser_client, lead, week):
    page = superuser_client.get(f"{LIST}{week.pk}/change/").content.decode()
    tools = page.split('id="weeksheet_form"')[0]
    assert 'value="approve"' in tools and 'value="reject"' in tools

    carol = granted(person("carol", is_staff=True), *STAFF_PERMISSIONS, "view_weeksheet")
    tools = signed_in(carol).get(f"{LIST}{week.pk}/change/").content.decode().split('id="weeksheet_form"')[0]
    assert 'value="approve"' not in tools


def test_nothing_is_added_edited_or_deleted(superuser_client, week):
    listing = superuser_client.get(LIST)

    assert [name for name, _label in listing.context["action_form"].fields["action"].choices] == [
        "",
        "approve",
        "reject",
    ]
    assert listing.context["has_add_permission"] is False
    assert f'href="{LIST}add/"' not in listing.content.decode()
    assert superuser_client.get(f"{LIST}add/").status_code == 403
    assert superuser_client.get(f"{LIST}{week.pk}/delete/").status_code == 403
    assert superuser_client.post(f"{LIST}{week.pk}/change/", {"state": "approved"}).status_code == 403
    assert 'name="_save"' not in superuser_client.get(f"{LIST}{week.pk}/change/").content.decode()
    assert state_of(week) == State.SUBMITTED


def test_hours_and_minutes():
    assert [hours_minutes(s) for s in (0, 59, 60, 3600 * 41 + 59 * 60 + 59, None)] == [
        "0:00",
        "0:00",
        "0:01",
        "41:59",
        "—",
    ]
    assert [hours_minutes(s, signed=True) for s in (5400, -5400, 30)] == ["+1:30", "-1:30", "0:00"]


# The profile's first day of the week ------------------------------------------------------


def profile_form(user, **fields):
    return {
        "user": user.pk,
        "time_zone": "",
        "language": "",
        "reminder_running_hours": "",
        "end_of_day": "",
        "working_days": "12345",
        "week_start": "1",
        **fields,
    }


def test_a_profile_sets_the_first_day_of_the_week(superuser_client, user):
    response = superuser_client.post("/admin/timesheet/profile/add/", profile_form(user, week_start="7"))

    assert response.status_code == 302
    assert Profile.objects.get(user=user).week_start == 7
    page = superuser_client.get("/admin/timesheet/profile/").content.decode()
    assert "Sunday" in page and "first day of the week" in page.lower()
    assert timesheets.week_of(owner_id=user.pk).first.isoweekday() == 7


def test_the_first_day_of_the_week_stays_while_a_week_is_held_unless_one_may_override(superuser_client, user, week):
    profile = Profile.objects.get_or_create(user=user)[0]
    clerk = granted(person("paul", is_staff=True), "view_profile", "change_profile")

    response = signed_in(clerk).post(
        f"/admin/timesheet/profile/{profile.pk}/change/", profile_form(user, week_start="3")
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["week_start"] == [
        "Some of these weeks are submitted or approved, or some of these days locked: "
        "changing the first day of the week would change them."
    ]
    assert Profile.objects.get(user=user).week_start == 1
    # Those who may override locks may: the submitted week keeps its own days.
    response = superuser_client.post(
        f"/admin/timesheet/profile/{profile.pk}/change/", profile_form(user, week_start="3")
    )
    assert response.status_code == 302 and Profile.objects.get(user=user).week_start == 3
    assert WeekSheet.objects.get(pk=week.pk).first_day == week.first_day


@pytest.mark.parametrize("team_id", ["99999999999999999999999", "9223372036854775808", "-1", "abc"])
def test_a_team_filter_that_names_no_team_shows_no_week(superuser_client, week, team_id):
    response = superuser_client.get(LIST, {"team": team_id})
    assert response.status_code == 200
