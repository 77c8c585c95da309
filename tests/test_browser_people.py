"""The people's page in a real browser (Debian's chromium) against a real uvicorn: two tabs stay in step."""

import os
import re
import shutil
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.fixtures.processes import WebProcess
from tests.support import assert_exact, require, wait_until
from timesheet.core.dbtime import db_now
from timesheet.domain import days, fiches, notifications, profiles
from timesheet.models import Etat, FicheEvent, FicheTemps, Notification, NotificationKind, Stretch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")
require(os.path.exists(CHROMIUM), "Debian's chromium is not installed (apt-get install chromium).", module=True)

from .test_browser import LAUNCH_ARGS  # noqa: E402

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def server(worker_env, tmp_path):
    """uvicorn serving the test database on a free loopback port, the way the README starts it."""
    web = WebProcess({**worker_env, "DJANGO_DATA_DIR": str(tmp_path)}, tmp_path / "uvicorn.log")
    try:
        wait_until(web.answers, every=0.1, message="uvicorn did not answer in time")
        yield web.url
    finally:
        web.stop()


@pytest.fixture
def browser(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the test's own ORM calls beside Playwright's loop
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def shift_back(fiche_id, by):
    """Pretend the running fiche started ``by`` earlier."""
    fiche = FicheTemps.objects.get(pk=fiche_id)
    FicheTemps.objects.filter(pk=fiche_id).update(
        en_calcul_depuis=fiche.en_calcul_depuis - by,
        compte_jusqua=fiche.en_calcul_depuis - by,
        temps_impute=fiche.temps_impute,
    )
    # Moved back over the time before it, which the ledger would refuse: set apart from the person's other time.
    Stretch.objects.filter(fiche_id=fiche_id, ended_at__isnull=True).update(
        started_at=fiche.en_calcul_depuis - by, exclusive=False
    )
    FicheEvent.objects.filter(fiche_id=fiche_id, kind="started").update(at=fiche.en_calcul_depuis - by)


def sign_in(page, url):
    page.goto(f"{url}/")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill("browser-pass")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")


def test_a_person_starts_switches_and_stops_earlier_across_two_tabs(server, browser, projet, tmp_path):
    # Hashed the way the server's own settings check it (the tests' settings use a faster hasher).
    password = PBKDF2PasswordHasher().encode("browser-pass", PBKDF2PasswordHasher().salt())
    dana = get_user_model().objects.create(username="dana", password=password)
    fiches.create_fiche(projet_id=projet.pk, actor=dana, libelle="Maquettes")
    fiches.create_fiche(projet_id=projet.pk, actor=dana, libelle="Intégration")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(60_000)
    first = context.new_page()
    sign_in(first, server)
    second = context.new_page()  # the same session, another tab
    second.goto(f"{server}/")

    first.get_by_role("button", name="Start Maquettes").click()
    maquettes = FicheTemps.objects.get(libelle="Maquettes")
    first.get_by_text("Started.").wait_for()
    wait_until(lambda: FicheTemps.objects.get(pk=maquettes.pk).etat == Etat.EN_CALCUL)
    # The other tab learns it from the stream, without a reload.
    second.locator(f'[data-fiche-id="{maquettes.pk}"] .etat-en_calcul').wait_for()
    second.get_by_role("button", name="Switch to this Intégration").wait_for()
    first.screenshot(path=str(tmp_path / "people-1366.png"), full_page=True)

    second.get_by_role("button", name="Switch to this Intégration").click()
    integration = FicheTemps.objects.get(libelle="Intégration")
    wait_until(lambda: FicheTemps.objects.get(pk=integration.pk).etat == Etat.EN_CALCUL)
    first.locator(f'[data-fiche-id="{integration.pk}"] .etat-en_calcul').wait_for()
    paused = FicheEvent.objects.get(fiche=maquettes, kind="paused")
    started = FicheEvent.objects.get(fiche=integration, kind="started")
    assert paused.at == started.at

    # Opened after the switch, "I stopped earlier…" holds a time of the new stretch, never one before it.
    card = first.locator(f'[data-fiche-id="{integration.pk}"]')
    card.get_by_text("I stopped earlier").click()
    field = card.get_by_label("Stopped at")
    # A browser writes a whole minute's value without its seconds ("14:48", not "14:48:00"): compared as instants.
    bounds = [
        datetime.fromisoformat(value) if value else None
        for value in field.evaluate("input => [input.min, input.value, input.max]")
    ]
    assert bounds[0] and bounds[0] <= bounds[1] <= bounds[2], bounds
    card.get_by_text("I stopped earlier").click()  # closed again

    # "I stopped earlier": as if it had been started ten minutes ago, stopped five minutes in.
    shift_back(integration.pk, timedelta(minutes=10))
    first.reload()  # the shift went behind the page's back: no event says so
    began = FicheTemps.objects.get(pk=integration.pk).en_calcul_depuis
    at = (began + timedelta(minutes=6)).replace(second=0, microsecond=0)
    card = first.locator(f'[data-fiche-id="{integration.pk}"]')
    card.get_by_text("I stopped earlier").click()
    card.get_by_label("Stopped at").fill(at.strftime("%Y-%m-%dT%H:%M"))  # the server's TIME_ZONE is UTC here
    card.get_by_role("button", name="Pause at that time").click()
    wait_until(lambda: FicheTemps.objects.get(pk=integration.pk).etat == Etat.EN_PAUSE)
    assert FicheTemps.objects.get(pk=integration.pk).temps_impute == at - began  # nothing after it counts
    second.locator(f'[data-fiche-id="{integration.pk}"] .etat-en_pause').wait_for()

    phone = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.set_default_timeout(60_000)
    sign_in(page, server)
    page.screenshot(path=str(tmp_path / "people-375.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than the phone
    if os.environ.get("FICHES_SCREENSHOTS"):
        for name in ("people-1366.png", "people-375.png"):
            shutil.copy(tmp_path / name, os.path.join(os.environ["FICHES_SCREENSHOTS"], name))


def test_an_answer_is_drawn_even_when_the_streams_redraw_replaced_its_form_first(server, browser, projet):
    dana = make_person("dana")
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=dana, libelle="Maquettes")
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    sign_in(page, server)
    page.evaluate(
        """window.redraws = 0; document.body.addEventListener("htmx:afterRequest", event => {
            if (event.detail.elt.id === "refresher") window.redraws++; })"""
    )

    def answer_after_the_redraw(route):
        answer = route.fetch()  # started: its commit reaches the stream, whose redraw replaces the form
        wait_until(lambda: page.evaluate("window.redraws"), message="the stream's redraw never came")
        # As an answer that moves the page to another week says (an entry added there): its address.
        route.fulfill(response=answer, headers={**answer.headers, "hx-push-url": "/?week=2026-03-02"})

    page.route(f"**/fiches/{fiche.pk}/start", answer_after_the_redraw)
    page.get_by_role("button", name="Start Maquettes").click()
    page.get_by_text("Started.").wait_for()  # the answer's message, drawn after all
    page.locator(f'[data-fiche-id="{fiche.pk}"] .etat-en_calcul').wait_for()
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_CALCUL
    assert page.url == f"{server}/?week=2026-03-02"  # and the address moved with it

    # A failure of an answer whose form was replaced meanwhile is said all the same.
    page.unroute(f"**/fiches/{fiche.pk}/start")
    page.evaluate("window.redraws = 0")

    def fail_after_the_redraw(route):
        route.fetch()  # paused: the stream's redraw replaces the form
        wait_until(lambda: page.evaluate("window.redraws"), message="the stream's redraw never came")
        route.fulfill(status=502, body="Bad Gateway")

    page.route(f"**/fiches/{fiche.pk}/pause", fail_after_the_redraw)
    page.locator(f'.running-fiche[data-fiche-id="{fiche.pk}"] button.stop').click()
    page.get_by_text("Network unavailable: nothing changed.").wait_for()


def make_person(name):
    """A person who signs in with "browser-pass", hashed the way the server's own settings check it."""
    password = PBKDF2PasswordHasher().encode("browser-pass", PBKDF2PasswordHasher().salt())
    return get_user_model().objects.create(username=name, password=password)


def test_a_forgotten_entry_added_yesterday_shows_in_a_second_tab_with_its_days_exact_total(
    server, browser, projet, tmp_path
):
    dana = make_person("dana")
    profiles.set_time_zone(user=dana, name="Europe/Paris")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(60_000)
    first = context.new_page()
    sign_in(first, server)
    second = context.new_page()
    second.goto(f"{server}/")

    yesterday = days.today_for(dana.pk) - timedelta(days=1)
    if yesterday < days.week_of(days.today_for(dana.pk))[0]:  # today is a Monday: yesterday is last week's
        for page in (first, second):
            page.locator("#week-title").wait_for()
            page.keyboard.press("ArrowLeft")
            page.wait_for_url(f"**/?week={days.week_of(yesterday)[0].isoformat()}")
    day = first.locator(f"#day-{yesterday.isoformat()}")
    day.get_by_role("link", name="Add an entry on").click()
    form = first.locator("#add-entry")
    assert form.get_by_label("Day").input_value() == yesterday.isoformat()
    form.get_by_label("Label").fill("Oubli d'hier")
    form.get_by_label("Project").select_option(str(projet.pk))
    form.get_by_label("Start time").fill("14:05")
    form.get_by_label("End time").fill("15:35")
    form.get_by_role("button", name="Add", exact=True).click()
    first.get_by_text("Entry added.").wait_for()

    # In the database: 14:05 to 15:35, Paris time, yesterday.
    zone = ZoneInfo("Europe/Paris")
    stretch = wait_until(lambda: Stretch.objects.filter(fiche__libelle="Oubli d'hier").first())
    assert stretch.started_at == datetime.combine(yesterday, time(14, 5), tzinfo=zone)
    assert stretch.ended_at == datetime.combine(yesterday, time(15, 35), tzinfo=zone)

    # The other tab shows it from the stream, without a reload, and the day's total is exact.
    entry = second.locator(f"#day-{yesterday.isoformat()} .entry", has_text="Oubli d'hier")
    entry.wait_for()
    assert "14:05 \N{EN DASH} 15:35" in entry.inner_text()
    total = second.locator(f"#day-{yesterday.isoformat()} .day-total .live-time")
    assert total.inner_text() == "1:30:00"
    assert first.locator(f"#day-{yesterday.isoformat()} .day-total .live-time").inner_text() == "1:30:00"

    # An entry over it is refused, and the refusal is said beside the form, where the person is.
    day.get_by_role("link", name="Add an entry on").click()
    form.get_by_label("Label").fill("Par-dessus")
    form.get_by_label("Project").select_option(str(projet.pk))
    form.get_by_label("Start time").fill("15:00")
    form.get_by_label("End time").fill("16:00")
    form.get_by_role("button", name="Add", exact=True).click()
    refusal = form.locator(".form-refusal")
    refusal.wait_for()
    assert "overlap" in refusal.inner_text() and "Oubli d'hier" in refusal.inner_text()
    assert refusal.is_visible() and form.get_by_label("Label").input_value() == "Par-dessus"
    assert not Stretch.objects.filter(fiche__libelle="Par-dessus").exists()

    for scheme in ("light", "dark"):
        for width in (1366, 375):
            look = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
            page = look.new_page()
            page.set_default_timeout(60_000)
            sign_in(page, server)
            page.goto(f"{server}/?week={yesterday.isoformat()}")
            page.locator(f"#day-{yesterday.isoformat()} .entry").wait_for()
            assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing wider than the screen
            page.screenshot(path=str(tmp_path / f"week-{width}-{scheme}.png"), full_page=True)
            look.close()
    if os.environ.get("FICHES_SCREENSHOTS"):
        for path in tmp_path.glob("week-*.png"):
            shutil.copy(path, os.path.join(os.environ["FICHES_SCREENSHOTS"], path.name))


def test_a_new_token_is_copied_from_its_box(server, browser):
    make_person("dana")
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    page.set_default_timeout(60_000)
    sign_in(page, server)
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Name").fill("script")
    page.get_by_role("button", name="Make a token").click()
    box = page.locator("#new-token")
    box.wait_for()
    raw = box.input_value()
    assert raw.startswith("fdt_")
    style = box.evaluate("b => [getComputedStyle(b).fontFamily, b.scrollWidth > b.clientWidth]")
    assert "mono" in style[0].lower() and style[1]  # monospace, on one line that scrolls on a phone
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == raw


def test_keyboard_shortcuts_run_the_timer_and_the_week_and_the_title_ticks(server, browser, projet):
    make_person("dana")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    sign_in(page, server)
    page.keyboard.press("?")
    help_ = page.get_by_role("dialog", name="Keyboard shortcuts")
    help_.wait_for()
    page.keyboard.press("Escape")
    help_.wait_for(state="hidden")

    page.keyboard.press("n")
    label = page.get_by_role("textbox", name="What are you working on?")
    assert page.evaluate("document.activeElement.id") == "timer-libelle"
    label.type("Relire la spec")  # an "s" typed in a field is a letter, not the shortcut
    assert label.input_value() == "Relire la spec"
    page.get_by_label("Project").first.select_option(str(projet.pk))
    page.locator("body").click(position={"x": 2, "y": 300})
    page.keyboard.press("s")
    page.get_by_text("Started.").wait_for()
    assert wait_until(lambda: FicheTemps.objects.filter(libelle="Relire la spec", etat=Etat.EN_CALCUL).exists())
    title = re.compile(r"^\d+:\d\d:\d\d · Relire la spec · Time sheets$")
    page.wait_for_function("document.title.includes('Relire la spec')")
    shown = page.title()
    assert title.match(shown), shown
    page.wait_for_function("shown => document.title !== shown", arg=shown)  # it ticks
    assert title.match(page.title())

    monday = days.week_of(days.today_for(FicheTemps.objects.get().owner_id))[0]
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**/?week={(monday - timedelta(days=7)).isoformat()}")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/?week={monday.isoformat()}")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/?week={(monday + timedelta(days=7)).isoformat()}")
    page.keyboard.press("t")
    page.wait_for_url(f"{server}/")
    page.keyboard.press("s")
    page.get_by_text("Paused.").wait_for()
    assert wait_until(lambda: FicheTemps.objects.get().etat == Etat.EN_PAUSE)


def test_a_forgotten_timer_rings_the_bell_live_and_is_stopped_at_the_time_one_really_stopped(
    server, browser, projet, spawn_worker, tmp_path
):
    from decimal import Decimal

    dana = make_person("dana")
    profiles.set_time_zone(user=dana, name="Europe/Paris")
    notifications.set_reminders(user=dana, running_hours=None, end_of_day=None, working_days="12345")
    # Started two hours ago (to the whole second), and forgotten: the site's threshold is 4 hours.
    since = (db_now() - timedelta(hours=2)).replace(microsecond=0)
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=dana, libelle="Maquettes", start=True, at=since)
    spawn_worker("--interval", "0.2")  # the ticker, which writes the reminders due at each tick
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    sign_in(page, server)
    bell = page.locator("#bell summary")
    assert bell.inner_text().strip() == "Notifications: none unread"

    # dana would rather be told after 36 seconds: the ticker tells at once, and the bell counts up without a reload.
    notifications.set_reminders(user=dana, running_hours=Decimal("0.01"), end_of_day=None, working_days="12345")
    page.get_by_text("1 unread notification", exact=True).wait_for(state="attached")
    told = Notification.objects.get(recipient=dana)
    assert (told.kind, told.fiche_id) == (NotificationKind.FORGOTTEN_TIMER, fiche.pk)
    assert told.occurred_at == since + timedelta(hours=0.01)  # the exact instant the threshold was crossed
    assert page.locator("#bell .bell-count").inner_text() == "1"

    # Another, written while the page is open: it counts too.
    Notification.objects.create(
        recipient=dana,
        kind=NotificationKind.MISSING_TIME,
        subject=f"owner:{dana.pk}",
        occurrence="2026-W45",
        occurred_at=db_now(),
        payload={"week": "2026-W45", "first": "2026-11-02", "days": ["2026-11-02", "2026-11-05"]},
    )
    page.get_by_text("2 unread notifications", exact=True).wait_for(state="attached")

    for scheme in ("light", "dark"):
        for width in (1366, 375):
            look = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
            other = look.new_page()
            other.set_default_timeout(60_000)
            sign_in(other, server)
            other.locator("#bell summary").click()
            other.get_by_role("button", name="Stop it at the time I really stopped").wait_for()
            assert other.evaluate("document.documentElement.scrollWidth") <= width  # nothing wider than the screen
            panel = other.locator("#bell .bell-panel").bounding_box()
            assert panel["x"] >= 0 and panel["x"] + panel["width"] <= width  # the panel fits the screen
            other.screenshot(path=str(tmp_path / f"bell-{width}-{scheme}.png"))
            look.close()

    # "I really stopped at" 37 minutes and 12 seconds in: the time after it is removed, exactly.
    bell.click()
    stopped = since + timedelta(minutes=37, seconds=12)
    field = page.get_by_label("I stopped at")
    assert field.input_value() == ""  # the person says when; nothing guessed
    field.focus()  # its end moves to now: never before when it was drawn
    bounds = [
        datetime.fromisoformat(value) for value in field.evaluate("input => [input.min, input.dataset.now, input.max]")
    ]
    assert bounds[0] <= bounds[1] <= bounds[2], bounds
    field.fill(stopped.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Stop it at the time I really stopped").click()
    wait_until(lambda: FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_PAUSE)
    paused = assert_exact(fiche.pk)
    assert paused.temps_impute == stopped - since
    assert Stretch.objects.get(fiche=fiche).ended_at == stopped
    page.get_by_text("1 unread notification", exact=True).wait_for(state="attached")
    assert Notification.objects.get(pk=told.pk).read_at is not None
    page.locator(f'[data-fiche-id="{fiche.pk}"] .etat-en_pause').wait_for()  # the page shows it paused

    # Days without time: their week, one click away; then nothing unread.
    page.get_by_role("button", name="See that week").click()
    page.wait_for_url("**/?week=2026-11-02")
    page.get_by_text("Notifications: none unread", exact=True).wait_for(state="attached")
    if os.environ.get("FICHES_SCREENSHOTS"):
        for path in tmp_path.glob("bell-*.png"):
            shutil.copy(path, os.path.join(os.environ["FICHES_SCREENSHOTS"], path.name))
