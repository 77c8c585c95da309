"""
The people's page's week: each day Monday to Sunday in the person's zone with
its entries and totals, entries added, edited, split and deleted from it, a
finished fiche continued; htmx gets the regions out of band, a plain form a
redirect; the settings page holds the preferences.
"""

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.factories import make_fiche, project, running_fiche
from tests.support import signed_in
from timesheet.domain import days, entries, fiches, profiles
from timesheet.domain.errors import Refused
from timesheet.models import ApiToken, Etat, FicheTemps, Stretch
from timesheet.web.people.common import parse_duration

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
MONDAY = date(2026, 11, 2)  # a past week: Monday 2 to Sunday 8 November 2026
WEDNESDAY, THURSDAY, FRIDAY = (MONDAY + timedelta(days=n) for n in (2, 3, 4))
DASH = "\N{EN DASH}"  # between an entry's start and end


@pytest.fixture(autouse=True)
def one_at_a_time(settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1


@pytest.fixture
def in_paris(user, settings):
    """The site counts in UTC; alice, in Paris."""
    settings.TIME_ZONE = "UTC"
    profiles.set_time_zone(user=user, name="Europe/Paris")


def at(day, hour, minute=0, second=0, microsecond=0):
    return datetime.combine(day, time(hour, minute, second, microsecond), tzinfo=PARIS)


def day_html(page, day):
    """The HTML of one day of the week on the page."""
    start = page.index(f'id="day-{day.isoformat()}"')
    end = page.find('<li class="day', start)
    return page[start : end if end > 0 else page.index("</ol>", start)]


def week_html(page):
    start = page.index('id="week"')
    return page[start : page.index('id="fiches"', start)]


def post_entry(client, chosen, follow=False, **fields):
    """The add form posted with the project ``chosen`` (``projet`` in ``fields`` overrides it)."""
    return client.post("/entries/new", {"projet": chosen.pk, "week": MONDAY.isoformat(), **fields}, follow=follow)


# Reading the week ---------------------------------------------------------------


def test_the_week_shows_each_day_monday_to_sunday_in_the_persons_zone_with_totals(alice, user, projet, in_paris):
    support = project("Support")
    # Across midnight in Paris (22:30 to 00:00 in UTC): half an hour on Wednesday, an hour on Thursday.
    entries.add_entry(
        actor=user, projet_id=projet.pk, libelle="Maquettes", start=at(WEDNESDAY, 23, 30), end=at(THURSDAY, 1)
    )
    entries.add_entry(actor=user, projet_id=support.pk, start=at(FRIDAY, 9), end=at(FRIDAY, 10, 15))

    page = alice.get("/?week=2026-11-05").content.decode()  # any day names its week

    positions = [page.index(f'id="day-{(MONDAY + timedelta(days=n)).isoformat()}"') for n in range(7)]
    assert positions == sorted(positions)
    assert "Monday 2 November" in page and "Sunday 8 November" in page
    wednesday, thursday, friday = (day_html(page, day) for day in (WEDNESDAY, THURSDAY, FRIDAY))
    assert f"23:30 {DASH} <small>Thu</small> 01:00" in wednesday and "22:30" not in wednesday
    assert ">0:30:00<" in wednesday and ">1:00:00<" in thursday
    assert f"09:00 {DASH} 10:15" in friday and ">1:15:00<" in friday and "<strong>Support</strong>" in friday
    week = week_html(page)
    assert re.search(r"<td>Refonte</td><td class=\"num\"><span [^>]*>1:30:00<", week)
    assert re.search(r"<td>Support</td><td class=\"num\"><span [^>]*>1:15:00<", week)
    assert 'class="live-time week-total" data-live-seconds="9900.0"' in week
    assert 'href="/?week=2026-10-26"' in week and 'href="/?week=2026-11-09"' in week and 'href="/" ' in week
    assert "Days in Europe/Paris." in week
    assert "?from=2026-11-02&amp;to=2026-11-08" in week  # the exports of this week


def test_a_week_that_is_no_date_is_explained_and_this_week_shown(alice, user):
    page = alice.get("/?week=next-tuesday").content.decode()
    assert "&#x27;week&#x27; must be a date (YYYY-MM-DD)." in page
    assert f'id="day-{days.today_for(user.pk).isoformat()}"' in page


def test_while_a_fiche_runs_today_the_week_and_its_project_tick_and_nothing_else(alice, user, projet):
    running_fiche(projet, user, "En cours")
    page = alice.get("/").content.decode()
    today = days.today_for(user.pk)
    week = week_html(page)
    for day in (days.week_of(today)[0] + timedelta(days=n) for n in range(7)):
        rates = re.findall(r'data-live-rate="(\d)"', day_html(page, day))
        assert rates == (["1", "1"] if day == today else []) or (day != today and set(rates) <= {"0"}), (day, rates)
    assert re.search(r'class="live-time week-total" data-live-seconds="[\d.]+" data-live-rate="1"', week)
    assert re.search(r'<td>Refonte</td><td class="num"><span [^>]*data-live-rate="1"', week)
    assert re.search(r"<title>\d+:\d\d:\d\d · En cours · Time sheets</title>", page)

    past = week_html(alice.get("/?week=2026-11-02").content.decode())
    assert set(re.findall(r'data-live-rate="(\d)"', past)) <= {"0"}  # another week: nothing ticks


# Adding -----------------------------------------------------------------------


def test_a_forgotten_entry_is_added_on_a_day_as_local_times_and_the_page_comes_back_to_its_week(
    alice, user, projet, in_paris
):
    response = post_entry(alice, projet, libelle="Oubli", day="2026-11-04", start="14:00", end="15:30")
    assert (response.status_code, response["Location"]) == (302, "/?week=2026-11-02")
    stretch = Stretch.objects.get()
    assert (stretch.started_at, stretch.ended_at) == (at(WEDNESDAY, 14), at(WEDNESDAY, 15, 30))
    assert stretch.fiche.libelle == "Oubli" and stretch.fiche.etat == Etat.TERMINEE
    page = alice.get(response["Location"]).content.decode()
    assert "Entry added." in page and f"14:00 {DASH} 15:30" in day_html(page, WEDNESDAY)


@pytest.mark.parametrize(
    "fields, start, end",
    [
        ({"start": "22:00", "end": "01:30"}, at(WEDNESDAY, 22), at(THURSDAY, 1, 30)),  # the end on the next day
        ({"start": "10:00", "duration": "1:45"}, at(WEDNESDAY, 10), at(WEDNESDAY, 11, 45)),
        ({"end": "18:00", "duration": "30m"}, at(WEDNESDAY, 17, 30), at(WEDNESDAY, 18)),
        ({"duration": "1h30"}, at(WEDNESDAY, 9), at(WEDNESDAY, 10, 30)),  # alone: at 09:00, the day being empty
    ],
)
def test_an_entry_is_typed_as_times_or_a_duration(alice, user, projet, in_paris, fields, start, end):
    post_entry(alice, projet, day="2026-11-04", **fields)
    stretch = Stretch.objects.get()
    assert (stretch.started_at, stretch.ended_at) == (start, end)


@pytest.mark.parametrize(
    "fields, text",
    [
        ({"start": "14:30", "end": "15:00"}, "would overlap"),
        ({"start": "14:30"}, "Give a start and an end time, or a duration."),
        ({"duration": "a while"}, "is not a duration"),
        ({"start": "25:00", "end": "26:00"}, "is not a time of day"),
        ({"day": "2026-11-31", "duration": "1:00"}, "must be a date"),
        ({"projet": "", "duration": "1:00"}, "Choose a project."),
    ],
)
def test_refused_entries_are_explained_and_add_nothing(alice, user, projet, in_paris, fields, text):
    entries.add_entry(actor=user, projet_id=projet.pk, start=at(WEDNESDAY, 14), end=at(WEDNESDAY, 15))
    response = post_entry(alice, projet, **{"day": "2026-11-04", **fields}, follow=True)
    assert text in response.content.decode()
    assert Stretch.objects.count() == 1


def test_an_entry_ending_in_the_future_is_refused(alice, user, projet):
    tomorrow = days.today_for(user.pk) + timedelta(days=1)
    response = alice.post(
        "/entries/new",
        {"projet": projet.pk, "day": tomorrow.isoformat(), "start": "09:00", "end": "10:00"},
        follow=True,
    )
    assert "is in the future" in response.content.decode()
    assert not Stretch.objects.exists()


# Editing, splitting, deleting, continuing ------------------------------------------


def test_an_edit_moves_only_what_was_changed(alice, user, projet, in_paris):
    entry = entries.add_entry(
        actor=user, projet_id=projet.pk, libelle="Revue", start=at(WEDNESDAY, 9, 0, 0, 250_000), end=at(WEDNESDAY, 10)
    )
    drawn = {
        "start": "2026-11-04T09:00:00",
        "start_was": "2026-11-04T09:00:00",  # as the page drew it: whole seconds
        "end_was": "2026-11-04T10:00:00",
        "projet_was": str(projet.pk),
        "libelle_was": "Revue",
        "projet": str(projet.pk),
        "week": MONDAY.isoformat(),
    }
    response = alice.post(f"/entries/{entry.id}/edit", {**drawn, "end": "2026-11-04T10:30:00", "libelle": "Revue"})
    assert (response.status_code, response["Location"]) == (302, "/?week=2026-11-02")
    stretch = Stretch.objects.get(pk=entry.id)
    assert (stretch.started_at, stretch.ended_at) == (at(WEDNESDAY, 9, 0, 0, 250_000), at(WEDNESDAY, 10, 30))
    alice.post(f"/entries/{entry.id}/edit", {**drawn, "end": "2026-11-04T10:00:00", "end_was": "2026-11-04T10:00:00"})
    assert Stretch.objects.get(pk=entry.id).ended_at == at(WEDNESDAY, 10, 30)  # as drawn: unchanged
    support = project("Support")
    alice.post(
        f"/entries/{entry.id}/edit",
        {
            **drawn,
            "end": "2026-11-04T10:30:00",
            "end_was": "2026-11-04T10:30:00",
            "projet": support.pk,
            "libelle": "Relecture",
        },
    )
    stretch = Stretch.objects.select_related("fiche").get(pk=entry.id)
    assert (stretch.fiche.projet_id, stretch.fiche.libelle) == (support.pk, "Relecture")
    assert stretch.started_at == at(WEDNESDAY, 9, 0, 0, 250_000)


def test_an_edit_refused_is_explained_and_changes_nothing(alice, user, projet, in_paris):
    first = entries.add_entry(actor=user, projet_id=projet.pk, start=at(WEDNESDAY, 9), end=at(WEDNESDAY, 10))
    entries.add_entry(actor=user, projet_id=projet.pk, start=at(WEDNESDAY, 11), end=at(WEDNESDAY, 12))
    fields = {"start": "2026-11-04T09:00:00", "start_was": "2026-11-04T09:00:00", "end_was": "2026-11-04T10:00:00"}
    response = alice.post(f"/entries/{first.id}/edit", {**fields, "end": "2026-11-04T11:30:00"}, follow=True)
    assert "would overlap" in response.content.decode()
    assert Stretch.objects.get(pk=first.id).ended_at == at(WEDNESDAY, 10)


def test_an_entry_is_split_and_deleted_from_the_page(alice, user, projet, in_paris):
    entry = entries.add_entry(actor=user, projet_id=projet.pk, start=at(WEDNESDAY, 9), end=at(WEDNESDAY, 11))
    response = alice.post(
        f"/entries/{entry.id}/split", {"at": "2026-11-04T10:15:00", "week": "2026-11-02"}, follow=True
    )
    assert "Entry split in two." in response.content.decode()
    first, second = Stretch.objects.order_by("started_at")
    assert (first.ended_at, second.started_at, second.ended_at) == (at(WEDNESDAY, 10, 15),) * 2 + (at(WEDNESDAY, 11),)
    response = alice.post(f"/entries/{second.pk}/delete", {"week": "2026-11-02"}, follow=True)
    assert "Entry deleted." in response.content.decode()
    assert list(Stretch.objects.values_list("pk", flat=True)) == [first.pk]
    assert FicheTemps.objects.get().temps_impute == timedelta(hours=1, minutes=15)


def test_someone_elses_entry_cannot_be_touched_from_the_page(alice, other_user, projet):
    theirs = entries.add_entry(actor=other_user, projet_id=projet.pk, start=at(WEDNESDAY, 9), end=at(WEDNESDAY, 10))
    for action, data in (("delete", {}), ("split", {"at": "2026-11-04T09:30:00"})):
        response = alice.post(f"/entries/{theirs.id}/{action}", data, follow=True)
        assert "does not exist" in response.content.decode()
    assert Stretch.objects.get(pk=theirs.id).ended_at == at(WEDNESDAY, 10)


def test_a_finished_fiche_is_continued_as_a_new_running_one_pausing_the_running_one(alice, user, projet):
    done = make_fiche(projet, user, "Rapport", start=True)
    fiches.finish_fiche(fiche_id=done.pk, actor=user)
    running = running_fiche(projet, user, "Autre chose")
    response = alice.post(f"/fiches/{done.pk}/continue", follow=True)
    assert "Started." in response.content.decode()
    new = FicheTemps.objects.running().get()
    assert (new.libelle, new.projet_id) == ("Rapport", projet.pk) and new.pk not in (done.pk, running.pk)
    assert FicheTemps.objects.get(pk=running.pk).etat == Etat.EN_PAUSE
    assert "Continue" in response.content.decode()  # each recently finished one offers it


# htmx --------------------------------------------------------------------------


def test_htmx_gets_the_regions_out_of_band_and_a_refusal_as_its_message_alone(alice, user, projet, in_paris):
    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/?week=2026-11-02"}
    fields = {"projet": projet.pk, "day": "2026-11-04", "start": "14:00", "end": "15:00"}
    added = alice.post("/entries/new", fields, **htmx)
    body = added.content.decode()
    assert added.status_code == 200 and "<html" not in body
    for region in ('id="timer"', 'id="week"', 'id="fiches"'):
        assert re.search(region + r'[^>]*hx-swap-oob="true"', body), region
    assert '<div id="messages" role="status" aria-live="polite" hx-swap-oob="innerHTML">' in body
    assert "Entry added." in body and f"14:00 {DASH} 15:00" in day_html(body, WEDNESDAY)

    refused = alice.post("/entries/new", fields, **htmx)
    body = refused.content.decode()
    assert refused.status_code == 409 and "would overlap" in body
    assert 'id="week"' not in body  # what was typed stays in the form

    moved = alice.post("/entries/new", {**fields, "day": "2026-10-28"}, **htmx)  # another week: the page goes there
    assert moved["HX-Push-Url"] == "/?week=2026-10-26"
    assert 'id="day-2026-10-28"' in moved.content.decode()


def test_htmx_navigates_weeks_by_regions_and_restores_history_with_the_whole_page(alice, user):
    regions = alice.get("/?week=2026-11-02", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in regions and 'id="day-2026-11-02"' in regions and 'hx-swap-oob="true"' in regions
    restore = alice.get("/?week=2026-11-02", HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in restore.content.decode()


def test_every_form_of_the_page_posts_without_javascript(alice, user, projet):
    running_fiche(projet, user, "En cours")
    page = alice.get("/").content.decode()
    forms = re.findall(r"<form [^>]*>", page)
    posting = [form for form in forms if "hx-post" in form]
    assert posting and all('method="post"' in form and 'action="/' in form for form in posting)


# Settings ------------------------------------------------------------------------


def test_the_settings_page_holds_the_time_zone_the_language_and_the_tokens(alice, user):
    home = alice.get("/").content.decode()
    assert 'href="/settings"' in home
    assert 'name="time_zone"' not in home and "/tokens/new" not in home
    page = alice.get("/settings").content.decode()
    for part in ('action="/time-zone"', 'action="/tokens/new"', 'action="/i18n/setlang/"', 'name="language"'):
        assert part in page, part


def test_preferences_come_back_to_the_settings_page(alice, user):
    assert alice.post("/time-zone", {"time_zone": "Europe/Paris"})["Location"] == "/settings"
    assert alice.post("/tokens/new", {"name": "ci", "days": "5"})["Location"] == "/settings"
    token = ApiToken.objects.get()
    assert f"fdt_{token.prefix}_" in alice.get("/settings").content.decode()  # shown once
    assert alice.post(f"/tokens/{token.pk}/revoke")["Location"] == "/settings"
    page = alice.get("/settings").content.decode()
    assert "Token revoked." in page and "fdt_" not in page


# Durations as people type them ------------------------------------------------------


@pytest.mark.parametrize(
    "text, minutes",
    [
        ("1:30", 90),
        ("0:45", 45),
        ("1:30:30", 90.5),
        ("2", 120),
        ("1.5", 90),
        ("1,25", 75),
        ("1h30", 90),
        ("1h 30m", 90),
        ("45m", 45),
        ("45 min", 45),
        ("2h", 120),
        ("", None),
    ],
)
def test_durations_are_read_as_people_type_them(text, minutes):
    parsed = parse_duration(text)
    assert parsed == (None if minutes is None else timedelta(minutes=minutes))


@pytest.mark.parametrize("text", ["abc", "1:75", "-1:00", "h", "1h30x"])
def test_what_is_no_duration_is_refused(text):
    with pytest.raises(Refused):
        parse_duration(text)


@pytest.mark.parametrize(
    "data",
    [
        {"day": "2026-03-29", "start": "01:00", "duration": "3:00"},  # Paris springs forward at 02:00
        {"day": "2026-10-25", "start": "01:00", "duration": "3:00"},  # and falls back at 03:00
        {"day": "2026-10-25", "end": "04:00", "duration": "3:00"},
    ],
)
def test_a_typed_duration_is_of_real_time_across_a_dst_change(user, projet, data, settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1
    profiles.set_time_zone(user=user, name="Europe/Paris")
    response = signed_in(user).post("/entries/new", {"projet": projet.pk, **data}, HTTP_X_REQUESTED_WITH="fetch")

    assert response.status_code == 200, response.content
    stretch = Stretch.objects.get()
    assert stretch.ended_at - stretch.started_at == timedelta(hours=3)


@pytest.mark.parametrize(
    "data",
    [
        {"day": "0002-01-02", "end": "00:00", "duration": "9999:00"},
        {"day": "9998-12-30", "start": "23:00", "duration": "9999:00"},
        {"day": "2026-01-05", "duration": "99999999999h"},
    ],
)
def test_absurd_durations_are_refused_not_a_server_error(user, projet, data):
    response = signed_in(user).post("/entries/new", {"projet": projet.pk, **data}, HTTP_X_REQUESTED_WITH="fetch")

    assert response.status_code == 400 and response.json()["code"] == "invalid"
