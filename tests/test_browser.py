"""The admin in a real browser: Debian's chromium driven by Playwright."""

import os
import re
import shutil

import pytest
from django.contrib.auth import get_user_model

from tests.support import require, wait_until
from timesheet.domain import fiches
from timesheet.models import Etat, FicheTemps

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

playwright = pytest.importorskip("playwright.sync_api")

require(os.path.exists(CHROMIUM), "Debian's chromium is not installed (apt-get install chromium).", module=True)

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page(monkeypatch, tmp_path):
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # the test makes around it are still plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)  # a busy machine is slow, not wrong
        yield page
        browser.close()


def seconds(text):
    hours, minutes, secs = (int(part) for part in text.strip().split(":"))
    return hours * 3600 + minutes * 60 + secs


@pytest.mark.django_db(transaction=True)
def test_staff_watch_a_fiche_tick_and_pause_it(live_server, page, projet, user, tmp_path):
    get_user_model().objects.create_superuser("root", password="browser-pass")
    fiche = fiches.create_fiche(projet_id=projet.pk, owner_id=user.pk, actor=user, libelle="Maquettes", start=True)

    page.goto(f"{live_server.url}/admin/timesheet/fichetemps/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "browser-pass")
    page.click("input[type=submit]")

    row = page.locator("#result_list tbody tr", has_text="Maquettes")
    live = row.locator(".live-time")
    first = seconds(live.inner_text())
    # The time ticks in the page, with no reload.
    wait_until(lambda: seconds(live.inner_text()) >= first + 2)
    page.screenshot(path=str(tmp_path / "running.png"), full_page=True)

    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "pause")
    page.click("button[name=index]")
    assert "1 fiche paused." in page.locator(".messagelist:not(#ticker-warning)").inner_text()
    row = page.locator("#result_list tbody tr", has_text="Maquettes")
    assert row.locator(".etat").inner_text().strip() == "paused"
    page.screenshot(path=str(tmp_path / "paused.png"), full_page=True)

    paused = FicheTemps.objects.get(pk=fiche.pk)
    assert paused.etat == Etat.EN_PAUSE
    frozen = row.locator(".live-time").inner_text()
    page.wait_for_timeout(1500)
    assert row.locator(".live-time").inner_text() == frozen  # a paused fiche's time stands still
    assert re.fullmatch(r"\d+:\d\d:\d\d", frozen)
