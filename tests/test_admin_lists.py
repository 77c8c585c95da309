"""The admin's change lists: compact columns, durations to the millisecond, dates and instants written one way."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from tests.factories import make_fiche, running_fiche
from timesheet.domain import fiches, tokens
from timesheet.models import ApiToken, FicheEvent, TickerHeartbeat
from timesheet.templatetags.timesheet_time import hms, hms_ms, instant, seconds_hms
from timesheet.workers.ticker import TickReport, record_tick, register_heartbeat

pytestmark = pytest.mark.django_db

ISO_INSTANT = r"\d{4}-\d\d-\d\d \d\d:\d\d"


@pytest.mark.parametrize(
    "value, text",
    [
        (timedelta(seconds=48, microseconds=730000), "0:00:48.730"),
        (timedelta(hours=26, minutes=3, seconds=4, microseconds=5600), "26:03:04.005"),
        (timedelta(microseconds=999), "0:00:00.000"),
        (-timedelta(minutes=5, microseconds=250000), "-0:05:00.250"),
        (timedelta(0), "0:00:00.000"),
        (None, ""),
    ],
)
def test_a_duration_to_the_millisecond(value, text):
    assert hms_ms(value) == text


def test_the_peoples_filters_are_unchanged():
    assert hms(timedelta(seconds=48, microseconds=730000)) == "0:00:48"
    assert hms(-timedelta(minutes=5)) == "-0:05:00"
    assert hms(None) == "0:00:00"
    assert seconds_hms(5400.9) == "1:30:00"


def test_an_instant_is_its_local_date_and_minute(settings):
    settings.TIME_ZONE = "Europe/Paris"
    timezone.activate("Europe/Paris")
    try:
        assert instant(datetime(2027, 6, 1, 22, 59, 59, tzinfo=UTC)) == "2027-06-02 00:59"
    finally:
        timezone.deactivate()
    assert instant(None) == ""


def list_page(client, model, language="en"):
    return client.get(f"/admin/timesheet/{model}/", HTTP_ACCEPT_LANGUAGE=language).content.decode()


def cells(page, column):
    """The text of each row's cell of ``column`` (its field-… class)."""
    found = re.findall(rf'<t[dh] class="field-{column}[^"]*">(.*?)</t[dh]>', page, re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip() for cell in found]


def test_event_deltas_are_to_the_millisecond(superuser_client, projet, user):
    fiche = make_fiche(projet, user)
    FicheEvent.objects.create(
        fiche=fiche,
        kind=FicheEvent.Kind.PAUSED,
        actor=user,
        at=timezone.now(),
        delta=timedelta(seconds=48, microseconds=730000),
        temps_impute=timedelta(hours=1, seconds=48, microseconds=730000),
    )
    page = list_page(superuser_client, "ficheevent")
    assert "0:00:48.730" in cells(page, "delta_ms")
    assert "1:00:48.730" in cells(page, "after_ms")
    assert "0:00:48.730000" not in page


@pytest.mark.parametrize("language", ["en", "fr"])
def test_token_dates_are_written_as_every_other_instant(superuser_client, user, settings, language):
    settings.LANGUAGE_CODE = language
    token, _raw = tokens.create_token(user=user, name="ci", lifetime=timedelta(days=180))
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    token.refresh_from_db()
    page = list_page(superuser_client, "apitoken", language)
    status = cells(page, "status")
    assert len(status) == 1 and timezone.localtime(token.expires_at).strftime("%Y-%m-%d %H:%M") in status[0]
    assert re.fullmatch(ISO_INSTANT, cells(page, "last_used")[0])
    assert not re.search(r"\b\d\d/\d\d/\d{4}\b", page)


def test_heartbeats_show_their_instants_the_same_way(superuser_client):
    alive = register_heartbeat(interval=5)
    record_tick(heartbeat_id=alive, report=TickReport(3, 1, 1, 0.0123))
    TickerHeartbeat.objects.filter(pk=alive).update(last_error="x" * 500)
    page = list_page(superuser_client, "tickerheartbeat", "fr")
    assert re.fullmatch(ISO_INSTANT, cells(page, "last_tick")[0])
    assert cells(page, "duration_ms") == ["12.3 ms"]
    assert len(cells(page, "error")[0]) < 100  # the whole error is on the heartbeat's page


def test_the_fiche_list_keeps_its_state_and_live_time_in_fewer_columns(superuser_client, projet, user):
    running = running_fiche(projet, user, "En cours")
    fiches.finish_fiche(fiche_id=make_fiche(projet, user, "Finie").pk, actor=user)
    page = list_page(superuser_client, "fichetemps")
    state = dict(zip(cells(page, "libelle_or_id"), cells(page, "state"), strict=True))
    assert state["Finie"] == "finished"
    since = timezone.localtime(running.en_calcul_depuis).strftime("%H:%M")
    assert state["En cours"].startswith("running") and since in state["En cours"]
    assert 'data-live-rate="1"' in page
