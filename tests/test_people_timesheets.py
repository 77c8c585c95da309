"""
The weekly time sheets on the people's page: *My week* with each day's and
project's total and what still runs, its last weeks with their state, Submit
and Withdraw; a lead's queue with Approve and Reject (a reason required),
shown to those who decide weeks only; htmx gets the regions out of band (and
the region alone when it polls), a plain form a redirect back to the weeks;
the first day of one's week on the settings page, refused once weeks are held.
"""

import re
from datetime import datetime, time, timedelta

import pytest

from tests.factories import person, project, running_fiche, team
from tests.support import signed_in
from timesheet.domain import days, entries, profiles, timesheets
from timesheet.domain.errors import Code, Refused
from timesheet.models import Notification, Profile, WeekSheet

pytestmark = pytest.mark.django_db

State = WeekSheet.State
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}


@pytest.fixture(autouse=True)
def one_at_a_time(settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1


@pytest.fixture
def in_paris(user, settings):
    """The site counts in UTC; alice, in Paris."""
    settings.TIME_ZONE = "UTC"
    profiles.set_time_zone(user=user, name="Europe/Paris")


@pytest.fixture
def lead(user, in_paris):
    """lena leads the team alice is in."""
    lena = person("lena", first_name="Lena", last_name="Lead")
    team("Crew", members=[user], leads=[lena])
    return lena


@pytest.fixture
def lena(lead):
    return signed_in(lead)


def weeks_ago(user, count):
    """alice's week ``count`` weeks before this one, in her zone and from her first day."""
    this = timesheets.week_of(owner_id=user.pk)
    return timesheets.week_of(owner_id=user.pk, day=this.first - timedelta(days=7 * count))


def work(user, projet, week, day, hour, hours, libelle=""):
    """An entry of ``hours`` on the week's ``day`` (0 its first day) from ``hour`` o'clock, in alice's zone."""
    zone = days.zone_of(week.zone_name)
    start = datetime.combine(week.first + timedelta(days=day), time(hour), tzinfo=zone)
    return entries.add_entry(
        actor=user, projet_id=projet.pk, libelle=libelle, start=start, end=start + timedelta(hours=hours)
    )


@pytest.fixture
def last_week(user, projet, in_paris):
    """Last week: 2 h on its second day and 1 h 30 on its fourth, on two projects."""
    week = weeks_ago(user, 1)
    work(user, projet, week, 1, 9, 2, "Maquettes")
    work(user, project("Support"), week, 3, 14, 1.5)
    return week


def region(page):
    """The weeks region of a page, or of an htmx answer."""
    start = page.index('id="weeks"')
    return page[start : page.index("</section>", start)]


def card(page):
    start = page.index('id="my-week"')
    return page[start : page.index("</article>", start)]


def sheet_of(user, week):
    return WeekSheet.objects.filter(owner=user, week=week.label).first()


# My week -------------------------------------------------------------------------------


def test_my_week_shows_each_days_and_projects_total_and_my_last_eight_weeks(alice, user, last_week):
    page = alice.get(f"/?sheet={last_week.label}").content.decode()
    shown = card(page)
    assert f'data-week="{last_week.label}"' in shown and 'data-state="open"' in shown
    strip = re.findall(r'<time class="strip-day" datetime="([\d-]+)">[^<]*</time> <span class="num">([^<]*)<', shown)
    assert strip == [
        (day.isoformat(), total)
        for day, total in zip(
            last_week.days, ["0:00:00", "2:00:00", "0:00:00", "1:30:00", "0:00:00", "0:00:00", "0:00:00"], strict=True
        )
    ]
    assert "<td>Refonte</td><td" in shown and "<td>Support</td>" in shown and ">3:30:00<" in shown
    assert 'id="my-week-submit"' in shown and "Back to my week" in shown

    rows = re.findall(r'<tr data-week="([^"]+)" data-state="([^"]+)"', region(page))
    assert len(rows) == 8 and rows[0][0] == timesheets.week_of(owner_id=user.pk).label
    assert (last_week.label, "open") in rows and rows[1][0] == last_week.label
    assert f'id="sheets-submit-{last_week.label}"' in page
    assert 'id="queue"' not in page  # alice decides nobody's week
    home = alice.get("/").content.decode()
    assert "My week" in card(home) and 'data-week="' + timesheets.week_of(owner_id=user.pk).label in card(home)


def test_a_name_that_is_no_week_shows_this_week(alice, user, in_paris):
    page = alice.get("/?sheet=2026-W54").content.decode()
    assert 'data-week="' + timesheets.week_of(owner_id=user.pk).label in card(page)


def test_what_still_runs_is_shown_with_a_note_and_refuses_this_weeks_submission(alice, user, projet, in_paris):
    running_fiche(projet, user, "En cours")
    page = alice.get("/").content.decode()
    shown = card(page)
    assert "Still running in this week:" in shown and "En cours" in shown
    assert "Stop it before submitting the week: it is not over yet." in shown
    this = timesheets.week_of(owner_id=user.pk)
    response = alice.post(f"/weeks/{this.label}/submit", follow=True)
    assert "is still running in week" in response.content.decode()
    assert not WeekSheet.objects.exists()


# Submitting and withdrawing ------------------------------------------------------------


def test_a_plain_form_submits_and_withdraws_and_comes_back_to_the_weeks(alice, user, last_week):
    fields = {"sheet_shown": last_week.label, "week": ""}
    response = alice.post(f"/weeks/{last_week.label}/submit", fields)
    assert response.status_code == 302 and response["Location"] == f"/?sheet={last_week.label}#weeks"
    sheet = sheet_of(user, last_week)
    assert sheet.state == State.SUBMITTED and sheet.microseconds == 3.5 * 3600 * 1_000_000
    page = alice.get(response["Location"]).content.decode()
    assert f"Week {last_week.label} submitted." in page
    shown = card(page)
    assert 'data-state="submitted"' in shown and "waiting for a decision" in shown and 'id="my-week-withdraw"' in shown
    assert f'<tr data-week="{last_week.label}" data-state="submitted"' in page

    response = alice.post(f"/weeks/{last_week.label}/withdraw", {"week": "2026-11-02"})
    assert response["Location"] == "/?week=2026-11-02#weeks"  # back to the page's week, the card on this week
    assert sheet_of(user, last_week).state == State.OPEN
    assert f"Week {last_week.label} withdrawn: it is open again." in alice.get("/").content.decode()


def test_htmx_gets_the_regions_out_of_band_and_a_refusal_as_its_message_alone(alice, user, last_week):
    htmx = {**HTMX, "HTTP_HX_CURRENT_URL": f"http://testserver/?sheet={last_week.label}"}
    submitted = alice.post(f"/weeks/{last_week.label}/submit", **htmx)
    body = submitted.content.decode()
    assert submitted.status_code == 200 and "<html" not in body
    for name in ("weeks", "week", "timer"):
        assert re.search(f'id="{name}"' + r'[^>]*hx-swap-oob="true"', body), name
    assert f"Week {last_week.label} submitted." in body
    assert f'data-week="{last_week.label}" data-state="submitted"' in card(body)  # the page's card: the same week

    refused = alice.post(f"/weeks/{last_week.label}/submit", **htmx)
    body = refused.content.decode()
    assert refused.status_code == 409 and "is submitted: it cannot be submitted" in body
    assert 'id="weeks"' not in body
    assert alice.post("/weeks/2026-W99/withdraw", **HTMX).status_code == 400
    assert alice.get(f"/weeks/{last_week.label}/submit").status_code == 405


def test_the_region_polls_alone_and_keeps_the_week_it_shows(alice, user, last_week):
    polled = alice.get(f"/weeks?sheet={last_week.label}", HTTP_HX_REQUEST="true")
    body = polled.content.decode()
    assert polled.status_code == 200 and body.lstrip().startswith('<section id="weeks"')
    assert "hx-swap-oob" not in body and "<html" not in body
    assert f'hx-get="/weeks?sheet={last_week.label}"' in body and 'hx-trigger="every 10s' in body
    assert f'data-week="{last_week.label}"' in card(body)
    assert 'hx-get="/weeks"' in alice.get("/weeks", HTTP_HX_REQUEST="true").content.decode()


def test_every_form_of_the_region_posts_without_javascript(lena, alice, user, lead, last_week):
    timesheets.submit(actor=user, owner_id=user.pk, week=last_week.label)
    for page in (alice.get("/").content.decode(), lena.get("/").content.decode()):
        forms = re.findall(r"<form [^>]*>", region(page))
        assert forms and all('method="post"' in form and 'action="/weeks/' in form for form in forms)
        assert all('hx-swap="none"' in form for form in forms)


# The lead's queue -----------------------------------------------------------------------


def test_a_lead_sees_the_queue_and_approves_a_week(lena, alice, user, lead, projet, last_week):
    before = weeks_ago(user, 3)
    work(user, projet, before, 0, 9, 3)  # her usual week: 3 h
    assert 'id="queue"' in lena.get("/").content.decode()  # she decides someone's weeks: shown, empty
    assert "No week is waiting for your decision." in lena.get("/").content.decode()
    timesheets.submit(actor=user, owner_id=user.pk, week=last_week.label)

    page = lena.get("/").content.decode()
    queue = page[page.index('id="queue"') :]
    sheet = sheet_of(user, last_week)
    assert f'data-sheet="{sheet.pk}"' in queue and "alice" in queue and last_week.label in queue
    assert ">2:00:00<" in queue and ">1:30:00<" in queue and "<td>Support</td>" in queue
    assert "+0:30:00 (+17 %)" in queue and "from the usual 3:00:00" in queue
    assert "Changed since" not in queue  # a first submission

    response = lena.post(f"/weeks/{user.pk}/{last_week.label}/approve", {"submission": "1"})
    assert response.status_code == 302 and response["Location"] == "/#weeks"
    sheet.refresh_from_db()
    assert sheet.state == State.APPROVED and sheet.decided_by == lead
    assert f"Week {last_week.label} of alice approved." in lena.get("/").content.decode()
    assert f'data-sheet="{sheet.pk}"' not in lena.get("/").content.decode()

    shown = card(alice.get(f"/?sheet={last_week.label}").content.decode())
    assert 'data-state="approved"' in shown and "Approved by Lena Lead on" in shown and "its time is locked" in shown
    assert "my-week-submit" not in shown and "my-week-withdraw" not in shown
    assert Notification.objects.filter(recipient=user, kind="week.approved").count() == 1


def test_a_rejection_needs_a_reason_and_shows_it_to_the_person(lena, alice, user, lead, projet, last_week):
    timesheets.submit(actor=user, owner_id=user.pk, week=last_week.label)
    url = f"/weeks/{user.pk}/{last_week.label}/reject"
    for reason in ("", "   "):
        refused = lena.post(url, {"reason": reason}, **HTMX)
        assert refused.status_code == 400 and "A rejection needs a reason." in refused.content.decode()
    assert sheet_of(user, last_week).state == State.SUBMITTED
    assert "A rejection needs a reason." in lena.post(url, {"reason": ""}, follow=True).content.decode()

    rejected = lena.post(url, {"reason": "Mardi : il manque la réunion.", "submission": "1"}, **HTMX)
    assert rejected.status_code == 200 and f"Week {last_week.label} of alice rejected." in rejected.content.decode()
    sheet = sheet_of(user, last_week)
    assert sheet.state == State.REJECTED and sheet.reason == "Mardi : il manque la réunion."

    page = alice.get(f"/?sheet={last_week.label}").content.decode()
    shown = card(page)
    assert 'data-state="rejected"' in shown and "Rejected by Lena Lead on" in shown
    assert "Mardi : il manque la réunion." in shown and "Submit again" in shown
    assert "Mardi : il manque la réunion." in page[page.index('id="my-weeks"') :]

    # Mended and submitted again: the lead sees what changed.
    work(user, projet, last_week, 1, 14, 1, "Réunion")
    alice.post(f"/weeks/{last_week.label}/submit")
    queue = lena.get("/").content.decode()
    queue = queue[queue.index('id="queue"') :]
    assert "submission 2" in queue and "Changed since its previous submission" in queue
    day = (last_week.first + timedelta(days=1)).strftime("%a %-d %b")
    assert re.search(day + r'[^<]*: <span class="num">2:00:00</span> → <span class="num">3:00:00</span>', queue)
    assert re.search(r'Refonte: <span class="num">2:00:00</span> → <span class="num">3:00:00</span>', queue)


def test_a_week_submitted_again_since_the_lead_saw_it_is_not_decided(lena, user, lead, last_week):
    timesheets.submit(actor=user, owner_id=user.pk, week=last_week.label)
    timesheets.withdraw(actor=user, owner_id=user.pk, week=last_week.label)
    timesheets.submit(actor=user, owner_id=user.pk, week=last_week.label)
    refused = lena.post(f"/weeks/{user.pk}/{last_week.label}/approve", {"submission": "1"}, **HTMX)
    assert refused.status_code == 409 and "submitted again since it was shown" in refused.content.decode()
    assert sheet_of(user, last_week).state == State.SUBMITTED


def test_someone_who_does_not_decide_the_week_neither_sees_nor_posts_the_queues_actions(
    alice, user, other_user, lead, last_week
):
    timesheets.submit(actor=user, owner_id=user.pk, week=last_week.label)
    bob = signed_in(other_user)
    page = bob.get("/").content.decode()
    assert 'id="queue"' not in page and "alice" not in region(page)
    assert 'id="queue"' not in bob.get("/weeks", HTTP_HX_REQUEST="true").content.decode()
    approve, reject = (f"/weeks/{user.pk}/{last_week.label}/{action}" for action in ("approve", "reject"))
    assert bob.post(approve, **HTMX).status_code == 404
    assert bob.post(reject, {"reason": "Non."}, **HTMX).status_code == 404
    assert bob.post(approve, HTTP_X_REQUESTED_WITH="fetch").json()["code"] == "not_found"
    plain = bob.post(reject, {"reason": "Non."}, follow=True)
    assert "does not exist" in plain.content.decode()
    # Her own week: she sees it, but deciding it needs the permission to.
    assert alice.post(approve, **HTMX).status_code == 403
    assert 'id="queue"' not in alice.get("/").content.decode()
    # Someone else's submission counter tells bob nothing either.
    assert bob.post(approve, {"submission": "7"}, **HTMX).status_code == 404
    assert bob.post(f"/weeks/{'9' * 30}/{last_week.label}/approve", **HTMX).status_code == 404
    sheet = sheet_of(user, last_week)
    assert sheet.state == State.SUBMITTED and sheet.decided_by is None and sheet.reason == ""
    assert not Notification.objects.filter(kind__in=["week.approved", "week.rejected"]).exists()


# The first day of one's week ---------------------------------------------------------------


def test_the_first_day_of_my_week_is_set_on_the_settings_page(alice, user, projet, in_paris):
    page = alice.get("/settings").content.decode()
    assert 'action="/settings/week-start"' in page and '<option value="1" selected>Monday</option>' in page
    response = alice.post("/settings/week-start", {"week_start": "7"}, follow=True)
    assert response.redirect_chain[-1][0] == "/settings"
    assert "First day of the week saved." in response.content.decode()
    assert '<option value="7" selected>Sunday</option>' in response.content.decode()
    assert Profile.objects.get(user=user).week_start == 7
    assert Profile.objects.get(user=user).time_zone == "Europe/Paris"  # the rest of the profile as it was
    # The weeks now begin on Sunday.
    shown = card(alice.get("/").content.decode())
    first = timesheets.week_of(owner_id=user.pk).first
    assert first.isoweekday() == 7 and f'datetime="{first.isoformat()}">Sun ' in shown

    for bad in ("8", "0", "Monday", "", "1.0"):
        refused = alice.post("/settings/week-start", {"week_start": bad}, follow=True)
        assert "is not a day of the week" in refused.content.decode(), bad
    assert Profile.objects.get(user=user).week_start == 7


def test_the_first_day_of_the_week_no_longer_changes_once_a_week_is_held(alice, user, projet, in_paris):
    week = weeks_ago(user, 1)
    work(user, projet, week, 2, 10, 1)
    timesheets.submit(actor=user, owner_id=user.pk, week=week.label)
    assert "it can no longer change" in alice.get("/settings").content.decode()
    response = alice.post("/settings/week-start", {"week_start": "3"}, follow=True)
    assert "changing the first day of the week would change them" in response.content.decode()
    assert Profile.objects.get(user=user).week_start == 1
    assert (
        "First day of the week saved."
        in alice.post("/settings/week-start", {"week_start": "1"}, follow=True).content.decode()
    )
    # Withdrawn, nothing holds it any more.
    timesheets.withdraw(actor=user, owner_id=user.pk, week=week.label)
    assert (
        "First day of the week saved."
        in alice.post("/settings/week-start", {"week_start": "3"}, follow=True).content.decode()
    )
    assert Profile.objects.get(user=user).week_start == 3


def test_set_week_start_mirrors_set_time_zone(user, superuser, projet, in_paris):
    with pytest.raises(Refused) as caught:
        profiles.set_week_start(user=user, week_start=True)
    assert caught.value.code == Code.INVALID
    assert profiles.set_week_start(user=user, week_start=2).week_start == 2
    week = weeks_ago(user, 1)
    work(user, projet, week, 2, 10, 1)
    timesheets.submit(actor=user, owner_id=user.pk, week=week.label)
    with pytest.raises(Refused) as caught:
        profiles.set_week_start(user=user, week_start=5)
    assert caught.value.code == Code.LOCKED
    assert profiles.set_week_start(user=user, week_start=5, actor=superuser).week_start == 5  # who may override locks


def test_the_week_shown_says_which_of_its_weeks_are_submitted_or_approved(db):
    nina, lena = person("nina"), person("lena")
    team("Crew", members=[nina], leads=[lena])
    week = timesheets.named_week(owner_id=nina.pk, week="2026-W45")
    entries.add_entry(
        actor=nina,
        projet_id=project().pk,
        start=week.starts_at + timedelta(hours=9),
        end=week.starts_at + timedelta(hours=10),
    )
    client = signed_in(nina)
    shown = f"/?week={week.first.isoformat()}"
    assert "week-held" not in client.get(shown).content.decode()
    timesheets.submit(actor=nina, owner_id=nina.pk, week=week.label)
    assert (
        "Week 2026-W45 is submitted for approval: withdraw it to change its time." in client.get(shown).content.decode()
    )
    timesheets.approve(actor=lena, owner_id=nina.pk, week=week.label)
    assert "Week 2026-W45 is approved: its time is locked." in client.get(shown).content.decode()
