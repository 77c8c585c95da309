"""
A week submitted and approved in a real browser (Debian's chromium) against
a real uvicorn, with the ticker running: the person submits their week on
their page, their lead approves it on another browser's page (a session of
their own), and the person's page shows it approved by itself, unreloaded.
"""

import os
import shutil
from datetime import datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.factories import project, team
from tests.support import wait_until
from tests.test_browser_people import browser, server  # noqa: F401 (fixtures)
from timesheet.domain import days, entries, timesheets
from timesheet.models import WeekSheet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "browser-pass"


def make_person(username, **fields):
    # Hashed the way the server's own settings check it (the tests' settings use a faster hasher).
    password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    return get_user_model().objects.create(username=username, password=password, **fields)


def sign_in(page, url, username):
    page.goto(f"{url}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")


def work(user, projet, week, day, hour, hours, libelle=""):
    """A finished entry of ``hours`` on the week's ``day`` (0: its first) from ``hour`` o'clock, in the user's zone."""
    start = datetime.combine(week.first + timedelta(days=day), time(hour), tzinfo=days.zone_of(week.zone_name))
    entries.add_entry(actor=user, projet_id=projet.pk, libelle=libelle, start=start, end=start + timedelta(hours=hours))


def setting(spawn_worker):
    """dana in lena's team, 14:45 of work last week and 12 hours in her usual week; the ticker running."""
    dana = make_person("dana", first_name="Dana", last_name="Durand")
    lena = make_person("lena", first_name="Lena", last_name="Lemaire")
    team("Studio", members=[dana], leads=[lena])
    site, support = project("Site vitrine"), project("Support")
    # Last week, over whatever the hour: nothing on this page depends on the time of day.
    this = timesheets.week_of(owner_id=dana.pk)
    week = timesheets.week_of(owner_id=dana.pk, day=this.first - timedelta(days=7))
    work(dana, site, week, 0, 9, 3.5, "Maquettes")
    work(dana, site, week, 1, 9, 4, "Intégration")
    work(dana, support, week, 1, 14, 1.25)
    work(dana, site, week, 3, 10, 6, "Recette")
    # Her usual week, three weeks ago: 12 hours.
    usual = timesheets.week_of(owner_id=dana.pk, day=this.first - timedelta(days=21))
    work(dana, site, usual, 2, 8, 12)
    spawn_worker("--interval", "0.5")  # the ticker, as it runs beside the site
    return dana, week


def open_pages(chromium, url, width=1366):
    """dana's page and lena's, each in a browser session of its own."""
    pages = []
    for username in ("dana", "lena"):
        context = chromium.new_context(viewport={"width": width, "height": 900})
        context.set_default_timeout(60_000)
        page = context.new_page()
        sign_in(page, url, username)
        pages.append(page)
    return pages


def test_a_person_submits_their_week_and_sees_it_approved_live_when_their_lead_approves_it(
    server,  # noqa: F811
    browser,  # noqa: F811
    spawn_worker,
    tmp_path,
):
    dana, week = setting(spawn_worker)

    mine, lead = open_pages(browser, server)
    lead.locator("#queue").get_by_text("No week is waiting for your decision.").wait_for()

    # The person shows last week in the card (its row's link), and submits it.
    mine.locator(f"#sheets-show-{week.label}").click()
    card = mine.locator(f'#my-week[data-week="{week.label}"]')
    card.wait_for()
    assert card.locator(".sheet-total").inner_text() == "14:45:00"
    assert mine.evaluate("location.search") == f"?sheet={week.label}"
    card.get_by_role("button", name=f"Submit week {week.label}").click()
    mine.locator("#messages").get_by_text(f"Week {week.label} submitted.").wait_for()
    mine.locator(f'#my-week[data-week="{week.label}"][data-state="submitted"]').wait_for()
    assert WeekSheet.objects.get(owner=dana, week=week.label).state == WeekSheet.State.SUBMITTED
    mine.evaluate("window.notReloaded = true")  # gone if the page were loaded again

    # The lead's page draws its queue again by itself: the week appears there.
    item = lead.locator(f'#queue .queue-item[data-week="{week.label}"]')
    item.wait_for(timeout=120_000)
    assert "Dana Durand" in item.inner_text() and "14:45:00" in item.inner_text()
    assert "+2:45:00 (+23 %)" in item.locator(".difference").inner_text()
    for width in (1366, 375):
        lead.set_viewport_size({"width": width, "height": 900})
        assert lead.evaluate("document.documentElement.scrollWidth") <= width  # nothing wider than the screen
        lead.locator("#queue").screenshot(path=str(tmp_path / f"queue-{width}.png"))
        lead.screenshot(path=str(tmp_path / f"queue-page-{width}.png"), full_page=True)
    lead.emulate_media(color_scheme="dark")
    lead.locator("#queue").screenshot(path=str(tmp_path / "queue-375-dark.png"))
    lead.emulate_media(color_scheme="light")
    lead.set_viewport_size({"width": 1366, "height": 900})

    item.get_by_role("button", name=f"Approve week {week.label} of Dana Durand").click()
    lead.locator("#messages").get_by_text(f"Week {week.label} of Dana Durand approved.").wait_for()
    wait_until(lambda: WeekSheet.objects.get(owner=dana, week=week.label).state == WeekSheet.State.APPROVED)
    assert lead.locator(f'#queue .queue-item[data-week="{week.label}"]').count() == 0

    # The person's page, never reloaded, shows it approved.
    approved = mine.locator(f'#my-week[data-week="{week.label}"][data-state="approved"]')
    approved.wait_for(timeout=120_000)
    assert "Approved by Lena Lemaire" in approved.inner_text()
    assert mine.locator(f'#my-weeks tr[data-week="{week.label}"][data-state="approved"]').count() == 1
    assert mine.evaluate("window.notReloaded") is True
    mine.screenshot(path=str(tmp_path / "weeks-person-1366.png"), full_page=True)
    mine.set_viewport_size({"width": 375, "height": 900})
    assert mine.evaluate("document.documentElement.scrollWidth") <= 375
    mine.locator("#weeks").screenshot(path=str(tmp_path / "weeks-person-375.png"))
    mine.emulate_media(color_scheme="dark")
    mine.locator("#weeks").screenshot(path=str(tmp_path / "weeks-person-375-dark.png"))

    mine.context.close()
    lead.context.close()
    if os.environ.get("FICHES_SCREENSHOTS"):
        for path in [*tmp_path.glob("queue-*.png"), *tmp_path.glob("weeks-*.png"), *tmp_path.glob("settings-*.png")]:
            shutil.copy(path, os.path.join(os.environ["FICHES_SCREENSHOTS"], path.name))


def test_a_lead_rejects_a_week_with_a_reason_that_the_person_reads_live(
    server,  # noqa: F811
    browser,  # noqa: F811
    spawn_worker,
    tmp_path,
):
    dana, week = setting(spawn_worker)
    timesheets.submit(actor=dana, owner_id=dana.pk, week=week.label)
    mine, lead = open_pages(browser, server, width=375)
    mine.goto(f"{server}/?sheet={week.label}")
    mine.locator(f'#my-week[data-week="{week.label}"][data-state="submitted"]').wait_for()
    mine.evaluate("window.notReloaded = true")

    item = lead.locator(f'#queue .queue-item[data-week="{week.label}"]')
    reason = item.get_by_label("Reason, to reject it")
    # Without a reason the browser does not even send it.
    item.get_by_role("button", name=f"Reject week {week.label} of Dana Durand").click()
    assert reason.evaluate("field => field.validity.valueMissing") is True
    # While a reason is typed, the region is not drawn again under the lead's fingers.
    reason.fill("Jeudi : la recette a duré 4 h, pas 6.")
    # The condition of its polling (hx-trigger's "[...]"), evaluated as htmx does, on the region.
    polls = (
        "section => new Function('return (' + section.getAttribute('hx-trigger').match(/\\[(.*?)\\]/)[1] + ')')"
        ".call(section)"
    )
    assert lead.locator("#weeks").evaluate(polls) is False
    item.get_by_role("button", name=f"Reject week {week.label} of Dana Durand").click()
    lead.locator("#messages").get_by_text(f"Week {week.label} of Dana Durand rejected.").wait_for()
    assert lead.locator("#weeks").evaluate(polls) is True  # its reason sent, it is drawn again as before

    rejected = mine.locator(f'#my-week[data-week="{week.label}"][data-state="rejected"]')
    rejected.wait_for(timeout=120_000)
    assert "Rejected by Lena Lemaire" in rejected.inner_text()
    assert "Jeudi : la recette a duré 4 h, pas 6." in rejected.locator(".reason").inner_text()
    rejected.get_by_role("button", name=f"Submit again week {week.label}").wait_for()
    assert mine.evaluate("window.notReloaded") is True
    mine.locator("#weeks").screenshot(path=str(tmp_path / "weeks-rejected-375.png"))

    mine.goto(f"{server}/settings")
    mine.get_by_label("First day of my week").select_option("7")
    mine.get_by_role("button", name="Save").nth(1).click()
    mine.get_by_text("First day of the week saved.").wait_for()
    mine.screenshot(path=str(tmp_path / "settings-375.png"))
    assert WeekSheet.objects.get(owner=dana, week=week.label).reason == "Jeudi : la recette a duré 4 h, pas 6."
    mine.context.close()
    lead.context.close()
    if os.environ.get("FICHES_SCREENSHOTS"):
        for path in [*tmp_path.glob("weeks-*.png"), *tmp_path.glob("settings-*.png")]:
            shutil.copy(path, os.path.join(os.environ["FICHES_SCREENSHOTS"], path.name))
