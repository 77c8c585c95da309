"""
The bell on the people's pages and the settings of reminders and
notifications: the unread count and its label, the list in the person's
zone, a forgotten timer stopped at the instant one really stopped (its time
after exactly the stretch up to it), kept running, all marked read, someone
else's never touched, refusals shown, every form without JavaScript, htmx
answers, and the settings saved.
"""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.factories import make_fiche
from tests.support import assert_exact
from timesheet.core.dbtime import db_now
from timesheet.domain import fiches, notifications, profiles
from timesheet.models import Etat, FicheEvent, FicheTemps, Notification, NotificationKind, Profile, Stretch

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
FETCH = {"HTTP_X_REQUESTED_WITH": "fetch"}
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}


@pytest.fixture(autouse=True)
def one_at_a_time(settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1


@pytest.fixture
def in_paris(user, settings):
    settings.TIME_ZONE = "UTC"
    profiles.set_time_zone(user=user, name="Europe/Paris")


def running_since(projet, owner, hours_ago=2, libelle="Maquettes"):
    """A fiche of ``owner`` running since ``hours_ago`` hours, to the whole second."""
    since = (db_now() - timedelta(hours=hours_ago)).replace(microsecond=0)
    return fiches.create_fiche(projet_id=projet.pk, actor=owner, libelle=libelle, start=True, at=since)


def forgotten(fiche, hours=1, kind=NotificationKind.FORGOTTEN_TIMER, **fields):
    """A reminder about the running ``fiche``'s current stretch, as the reminders' pass writes it."""
    fiche = FicheTemps.objects.select_related("projet").get(pk=fiche.pk)
    stretch = Stretch.objects.get(fiche=fiche, ended_at__isnull=True)
    payload = {
        "fiche": fiche.pk,
        "projet": fiche.projet.designation,
        "libelle": fiche.libelle,
        "running_since": fiche.en_calcul_depuis.isoformat(),
    }
    if kind == NotificationKind.FORGOTTEN_TIMER:
        payload["threshold_hours"] = hours
        occurred_at = fiche.en_calcul_depuis + timedelta(hours=hours)
    else:
        payload |= {"day": fiche.en_calcul_depuis.date().isoformat(), "end_of_day": "19:00"}
        occurred_at = fiche.en_calcul_depuis + timedelta(minutes=30)
    return Notification.objects.create(
        recipient_id=fiche.owner_id,
        kind=kind,
        subject=f"stretch:{stretch.pk}",
        fiche=fiche,
        occurred_at=occurred_at,
        payload=payload,
        **fields,
    )


def missing(owner, first=date(2026, 11, 2), occurred_at=datetime(2026, 11, 9, 8, tzinfo=UTC), **fields):
    return Notification.objects.create(
        recipient=owner,
        kind=NotificationKind.MISSING_TIME,
        subject=f"owner:{owner.pk}",
        occurrence=fields.pop("occurrence", "2026-W45"),
        occurred_at=occurred_at,
        payload={"week": "2026-W45", "first": first.isoformat(), "days": [first.isoformat(), "2026-11-04"]},
        **fields,
    )


def bell_html(page):
    start = page.index('id="bell"')
    return page[start : page.index("</details>", start)]


def local(moment):
    return moment.astimezone(PARIS).strftime("%Y-%m-%dT%H:%M:%S")


# The bell ---------------------------------------------------------------------------


def test_the_bell_counts_ones_own_unread_notifications_with_a_label_that_says_so(alice, user, other_user, projet):
    assert "Notifications: none unread" in bell_html(alice.get("/").content.decode())
    assert 'class="bell-count"' not in bell_html(alice.get("/").content.decode())
    for week in ("2026-W45", "2026-W46", "2026-W47"):
        missing(user, occurrence=week)
    missing(user, occurrence="2026-W44", read_at=db_now())
    missing(other_user, occurrence="2026-W45")  # bob's: never alice's business
    bell = bell_html(alice.get("/").content.decode())
    assert "3 unread notifications" in bell
    assert re.search(r'class="bell-count"[^>]*>3<', bell)
    assert "1 unread notification<" in bell_html(_after_reading(alice, user, 2))
    # Every people's page has it.
    assert "1 unread notification<" in bell_html(alice.get("/settings").content.decode())
    assert "1 unread notification<" in bell_html(alice.get("/notifications/").content.decode())


def _after_reading(client, user, how_many):
    for notification in Notification.objects.filter(recipient=user, read_at__isnull=True)[:how_many]:
        client.post(f"/notifications/{notification.pk}/read")
    return client.get("/").content.decode()


def test_a_kind_turned_off_for_the_page_is_neither_counted_nor_listed(alice, user, projet):
    fiche = running_since(projet, user)
    forgotten(fiche)
    missing(user)
    notifications.set_preferences(user=user, choices={NotificationKind.MISSING_TIME: {"email"}})
    page = alice.get("/").content.decode()
    assert "1 unread notification<" in bell_html(page)
    assert 'data-kind="missing_time"' not in page
    assert 'data-kind="forgotten_timer"' in bell_html(page)


def test_the_list_shows_titles_and_instants_in_the_persons_zone_newest_first(alice, user, other_user, projet, in_paris):
    older = missing(user, occurred_at=datetime(2026, 11, 9, 8, 0, tzinfo=UTC))  # 09:00 in Paris
    fiche = running_since(projet, user, libelle="Maquettes")
    newer = forgotten(fiche, hours=1.5)
    missing(other_user)
    page = alice.get("/notifications/").content.decode()
    main = page[page.index("<main") :]
    assert main.index(f'data-notification-id="{newer.pk}"') < main.index(f'data-notification-id="{older.pk}"')
    assert "“Maquettes” has been running for more than 1.5 hours." in main
    assert "Week 2026-W45: 2 working days without time." in main
    assert "Mon 9 Nov 2026, 09:00" in main and "(Europe/Paris)" in main
    assert main.count("data-notification-id") == 2  # not bob's
    # The stop field: required, empty, bounded by the stretch's start and now, in Paris time.
    field = re.search(rf'<input id="page-at-{newer.pk}"[^>]*>', main).group(0)
    assert "required" in field and "value=" not in field
    assert f'min="{local(fiche.en_calcul_depuis)}"' in field
    assert 'max="' in field


def test_pages_of_notifications_go_back_in_time(alice, user):
    made = [missing(user, occurrence=f"2026-W{n:02d}") for n in range(1, 56)]
    first = alice.get("/notifications/").content.decode()
    first_main = first[first.index("<main") :]
    assert first_main.count("data-notification-id") == 50
    older = re.search(r'href="/notifications/\?before=(\d+)"', first_main)
    second = alice.get(f"/notifications/?before={older.group(1)}").content.decode()
    second_main = second[second.index("<main") :]
    assert second_main.count("data-notification-id") == 5
    assert f'data-notification-id="{made[0].pk}"' in second_main


# Acting on a forgotten timer ------------------------------------------------------


@pytest.mark.parametrize("kind", [NotificationKind.FORGOTTEN_TIMER, NotificationKind.END_OF_DAY])
def test_stop_at_the_time_i_really_stopped_removes_the_forgotten_time_exactly(alice, user, projet, in_paris, kind):
    fiche = running_since(projet, user, hours_ago=3)
    notification = forgotten(fiche, kind=kind)
    since = FicheTemps.objects.get(pk=fiche.pk).en_calcul_depuis
    stopped = since + timedelta(hours=1, minutes=12, seconds=7)
    response = alice.post(
        f"/notifications/{notification.pk}/stop", {"at": local(stopped), "next": "/settings"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/settings"  # a plain form goes back where it was sent from
    page = response.content.decode()
    assert f"Stopped at {stopped.astimezone(PARIS):%Y-%m-%d %H:%M:%S} (Europe/Paris)" in page
    paused = assert_exact(fiche.pk)  # the stored time is the ledger's and the audit trail's
    assert paused.etat == Etat.EN_PAUSE
    assert paused.temps_impute == stopped - since  # the stretch up to that instant, nothing after
    assert Stretch.objects.get(fiche=fiche).ended_at == stopped
    assert FicheEvent.objects.filter(fiche=fiche, kind="paused").get().at == stopped
    assert Notification.objects.get(pk=notification.pk).read_at is not None
    assert "Stop it at the time I really stopped" not in bell_html(page)


def test_keep_it_running_marks_it_read_and_changes_nothing_else(alice, user, projet):
    fiche = running_since(projet, user)
    notification = forgotten(fiche)
    before = FicheTemps.objects.get(pk=fiche.pk)
    response = alice.post(f"/notifications/{notification.pk}/read", follow=True)
    assert "Marked as read." in response.content.decode()
    assert Notification.objects.get(pk=notification.pk).read_at is not None
    after = FicheTemps.objects.get(pk=fiche.pk)
    assert (after.etat, after.en_calcul_depuis) == (Etat.EN_CALCUL, before.en_calcul_depuis)
    assert not FicheEvent.objects.filter(fiche=fiche).exclude(kind__in=["created", "started"]).exists()
    first_reading = Notification.objects.get(pk=notification.pk).read_at
    alice.post(f"/notifications/{notification.pk}/read")  # again: the first reading stays
    assert Notification.objects.get(pk=notification.pk).read_at == first_reading


def test_the_stop_is_offered_only_while_the_fiche_runs_the_stretch_it_was_about(alice, user, projet):
    fiche = running_since(projet, user)
    notification = forgotten(fiche)
    assert f"bell-at-{notification.pk}" in bell_html(alice.get("/").content.decode())
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    fiches.start_fiche(fiche_id=fiche.pk, actor=user)  # another stretch since
    bell = bell_html(alice.get("/").content.decode())
    assert f"bell-at-{notification.pk}" not in bell and "Mark as read" in bell
    response = alice.post(f"/notifications/{notification.pk}/stop", {"at": local(db_now())}, **FETCH)
    assert response.status_code == 409 and response.json()["code"] == "wrong_state"
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_CALCUL
    assert Notification.objects.get(pk=notification.pk).read_at is None


@pytest.mark.parametrize(
    "at, text, status",
    [
        ("BEFORE", "it has run only since", 400),
        ("", "Give the time you stopped at.", 400),
        ("yesterday", "is not a date and time", 400),
        ("FUTURE", "in the future", 400),
    ],
)
def test_a_refused_stop_is_explained_and_changes_nothing(alice, user, projet, in_paris, at, text, status):
    fiche = running_since(projet, user)
    notification = forgotten(fiche)
    since = FicheTemps.objects.get(pk=fiche.pk).en_calcul_depuis
    at = {"BEFORE": local(since - timedelta(minutes=1)), "FUTURE": local(db_now() + timedelta(hours=1))}.get(at, at)
    page = alice.post(f"/notifications/{notification.pk}/stop", {"at": at}, follow=True).content.decode()
    assert text in page
    fetched = alice.post(f"/notifications/{notification.pk}/stop", {"at": at}, **FETCH)
    assert fetched.status_code == status and text in fetched.json()["error"]
    htmx = alice.post(f"/notifications/{notification.pk}/stop", {"at": at}, **HTMX)
    assert htmx.status_code == status
    assert 'id="messages"' in htmx.content.decode() and 'id="timer"' not in htmx.content.decode()  # all typed stays
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_CALCUL
    assert Notification.objects.get(pk=notification.pk).read_at is None


def test_mark_all_as_read_reads_only_ones_own(alice, user, other_user, projet):
    mine = [missing(user, occurrence="2026-W45"), missing(user, occurrence="2026-W46")]
    theirs = missing(other_user)
    response = alice.post("/notifications/read-all", {"next": "/notifications/"}, follow=True)
    assert response.redirect_chain[-1][0] == "/notifications/"
    assert "2 notifications marked as read." in response.content.decode()
    assert all(Notification.objects.get(pk=n.pk).read_at for n in mine)
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    again = alice.post("/notifications/read-all", **FETCH)
    assert again.json() == {"message": "No unread notifications."}


def test_someone_elses_notification_is_not_found_and_stays_as_it_was(alice, other_user, projet):
    fiche = running_since(projet, other_user)
    theirs = forgotten(fiche)
    for action, data in (("read", {}), ("stop", {"at": local(db_now())})):
        response = alice.post(f"/notifications/{theirs.pk}/{action}", data, **FETCH)
        assert response.status_code == 404
        assert response.json() == {"error": f"Notification {theirs.pk} does not exist.", "code": "not_found"}
        page = alice.post(f"/notifications/{theirs.pk}/{action}", data, follow=True).content.decode()
        assert f"Notification {theirs.pk} does not exist." in page
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_CALCUL
    assert f'data-notification-id="{theirs.pk}"' not in alice.get("/notifications/").content.decode()


@pytest.mark.parametrize("url", ["/notifications/99999999999999999999/read", "/notifications/0/stop"])
def test_bad_ids_are_not_found(alice, url):
    response = alice.post(url, **FETCH)
    assert response.status_code == 404


def test_actions_take_only_post(alice, user):
    notification = missing(user)
    assert alice.get(f"/notifications/{notification.pk}/read").status_code == 405
    assert alice.get("/notifications/read-all").status_code == 405
    assert Notification.objects.get(pk=notification.pk).read_at is None


def test_signed_out_visitors_go_to_the_sign_in_page(client):
    response = client.get("/notifications/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_days_without_time_lead_to_their_week(alice, user):
    notification = missing(user, first=date(2026, 11, 4))  # a Wednesday: the week of Monday 2 November
    response = alice.post(f"/notifications/{notification.pk}/read", {"go_week": "2026-11-02"})
    assert response.status_code == 302 and response["Location"] == "/?week=2026-11-02"
    assert Notification.objects.get(pk=notification.pk).read_at is not None
    # Read, it still links to that week.
    assert 'href="/?week=2026-11-02"' in alice.get("/notifications/").content.decode()


# htmx and the stream --------------------------------------------------------------


def test_htmx_actions_draw_the_regions_and_the_bell_again(alice, user, projet, in_paris):
    fiche = running_since(projet, user)
    notification = forgotten(fiche)
    since = FicheTemps.objects.get(pk=fiche.pk).en_calcul_depuis
    response = alice.post(f"/notifications/{notification.pk}/stop", {"at": local(since + timedelta(minutes=5))}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    for region in ("timer", "week", "fiches", "bell"):
        assert re.search(rf'id="{region}"[^>]*hx-swap-oob="true"', html), region
    assert "Notifications: none unread" in html
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(minutes=5)


def test_the_stream_redraws_the_bell_alone(alice, user):
    missing(user)
    response = alice.get("/notifications/", **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="bell"')
    assert 'hx-swap-oob="true"' in html and "1 unread notification<" in html
    assert 'id="timer"' not in html
    assert "HX-Request" in response["Vary"]
    home = alice.get("/").content.decode()
    assert re.search(r'hx-get="/notifications/"[^>]*hx-trigger="sse:notification\b', home)


# Settings -------------------------------------------------------------------------


def test_reminders_are_saved_from_the_settings_page(alice, user, settings):
    settings.REMINDER_RUNNING_HOURS = 4
    page = alice.get("/settings").content.decode()
    assert "empty for this site&#x27;s default, 4 hours" in page or "empty for this site's default, 4 hours" in page
    assert 'name="end_of_day" type="time" value="19:00"' in page  # the default
    monday = re.search(r'<input type="checkbox" name="working_days" value="1"[^>]*>', page).group(0)
    assert "checked" in monday and "Monday" in page
    response = alice.post(
        "/settings/reminders",
        {"running_hours": "1,5", "end_of_day": "18:30", "working_days": ["4", "1", "2", "3"]},
        follow=True,
    )
    assert "Reminders saved." in response.content.decode()
    profile = Profile.objects.get(user=user)
    assert profile.reminder_running_hours == Decimal("1.5")
    assert profile.end_of_day.strftime("%H:%M") == "18:30"
    assert profile.working_days == "1234"
    page = response.content.decode()
    assert 'name="running_hours"' in page and 'value="1.5"' in page
    saturday = re.search(r'<input type="checkbox" name="working_days" value="6"[^>]*>', page).group(0)
    assert "checked" not in saturday

    alice.post("/settings/reminders", {"running_hours": "", "end_of_day": "", "working_days": []})
    profile = Profile.objects.get(user=user)
    assert (profile.reminder_running_hours, profile.end_of_day, profile.working_days) == (None, None, "")
    alice.post("/settings/reminders", {"running_hours": "0", "working_days": ["1"]})
    assert Profile.objects.get(user=user).reminder_running_hours == Decimal(0)


@pytest.mark.parametrize(
    "fields, text",
    [
        ({"running_hours": "soon"}, "is not a number of hours"),
        ({"running_hours": "-1"}, "from 0 to"),
        ({"running_hours": "1.555"}, "at most two decimals"),
        ({"end_of_day": "25:00"}, "is not a time of day"),
        ({"working_days": ["8"]}, "Working days are ISO weekdays"),
    ],
)
def test_bad_reminders_are_explained_and_change_nothing(alice, user, fields, text):
    notifications.set_reminders(user=user, running_hours=Decimal(2), end_of_day=None, working_days="12345")
    data = {"running_hours": "3", "end_of_day": "18:00", "working_days": ["1"], **fields}
    response = alice.post("/settings/reminders", data, follow=True)
    assert text in response.content.decode()
    profile = Profile.objects.get(user=user)
    assert (profile.reminder_running_hours, profile.end_of_day, profile.working_days) == (Decimal(2), None, "12345")


def test_notification_choices_are_saved_per_kind_and_channel(alice, user):
    page = alice.get("/settings").content.decode()
    assert page.count('type="checkbox" name="forgotten_timer"') == 2
    assert "checked" in re.search(r'name="missing_time" value="page"[^>]*>', page).group(0)
    response = alice.post(
        "/settings/notifications",
        {"forgotten_timer": ["email", "page"], "end_of_day": ["page"], "missing_time": []},
        follow=True,
    )
    assert "Notifications saved." in response.content.decode()
    assert notifications.channels_for(user_id=user.pk, kind="forgotten_timer") == {"email", "page"}
    assert notifications.channels_for(user_id=user.pk, kind="end_of_day") == {"page"}
    assert notifications.channels_for(user_id=user.pk, kind="missing_time") == set()
    page = response.content.decode()
    assert "checked" not in re.search(r'name="missing_time" value="page"[^>]*>', page).group(0)
    bad = alice.post("/settings/notifications", {"forgotten_timer": ["pigeon"]}, follow=True)
    assert "“pigeon” is not a channel." in bad.content.decode()
    assert notifications.channels_for(user_id=user.pk, kind="forgotten_timer") == {"email", "page"}


def test_the_language_chosen_in_the_settings_is_also_the_persons_for_emails(alice, user, settings):
    response = alice.post("/settings/language", {"language": "fr", "next": "/settings"})
    assert response.status_code == 302 and response["Location"] == "/settings"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "fr"
    assert Profile.objects.get(user=user).language == "fr"
    assert 'lang="fr"' in alice.get("/settings").content.decode()
    bad = alice.post("/settings/language", {"language": "xx", "next": "/settings"}, follow=True)
    assert "« xx » n’est pas une langue de ce site." in bad.content.decode()  # noqa: RUF001
    assert Profile.objects.get(user=user).language == "fr"


def test_the_bell_speaks_french(alice, user, projet, in_paris):
    missing(user, occurred_at=datetime(2026, 12, 7, 17, 30, tzinfo=UTC))  # 18:30 in Paris
    fiche = running_since(projet, user)
    notification = forgotten(fiche)
    page = alice.get("/notifications/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert '<html lang="fr">' in page and "Réglages" in page
    assert "lun 7 déc 2026, 18:30" in page.lower()  # Django's French dates, in Paris time
    settings_page = alice.get("/settings", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "lundi" in settings_page.lower()  # the working days in French, Monday first
    since = FicheTemps.objects.get(pk=fiche.pk).en_calcul_depuis
    refused = alice.post(
        f"/notifications/{notification.pk}/stop",
        {"at": local(since - timedelta(minutes=1))},
        HTTP_ACCEPT_LANGUAGE="fr",
        **FETCH,
    )
    assert refused.status_code == 400
    assert refused.json()["error"]  # in French where the catalogue has it; never an empty message


def test_a_paused_fiches_reminder_offers_no_stop(alice, user, projet):
    fiche = make_fiche(projet, user)
    fiches.start_fiche(fiche_id=fiche.pk, actor=user)
    notification = forgotten(fiche)
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    assert f"bell-at-{notification.pk}" not in bell_html(alice.get("/").content.decode())


@pytest.mark.parametrize("target", ["https://elsewhere.example/", "//elsewhere.example/", "javascript:alert(1)"])
def test_a_plain_form_goes_back_only_to_a_page_of_ours(alice, user, target):
    notification = missing(user)
    response = alice.post(f"/notifications/{notification.pk}/read", {"next": target})
    assert response.status_code == 302 and response["Location"] == "/"
