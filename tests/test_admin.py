import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from tests.factories import person, running_fiche
from tests.support import elapse, subscription_form
from timesheet.domain import fiches, webhooks
from timesheet.models import Etat, FicheEvent, FicheTemps, LockedPeriod, Projet, WebhookSubscription
from timesheet.web.admin.webhooks import WebhookSubscriptionAdmin
from timesheet.workers.ticker import TickReport, record_tick, register_heartbeat, tick

pytestmark = pytest.mark.django_db

LIST = "/admin/timesheet/fichetemps/"


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def test_list_shows_live_time_totals_and_a_banner_without_ticker(superuser_client, projet, user):
    fiche = running_fiche(projet, user)
    fiches.adjust_fiche(
        fiche_id=fiche.pk,
        actor=get_user_model().objects.get(username="root"),
        delta=timedelta(hours=1, minutes=2, seconds=3),
        reason="x",
    )
    response = superuser_client.get(LIST)
    content = response.content.decode()
    assert response.status_code == 200
    assert "1:02:0" in content  # the live time: 1:02:03 and what it ran since, on a busy machine
    assert 'data-live-rate="1"' in content
    assert response.context["totals"]["count"] == 1
    assert response.context["totals"]["running"] == 1
    assert response.context["totals"]["seconds"] >= 3723
    assert "No ticker is alive" in content
    assert "etat-en_calcul" in content


def test_no_banner_while_a_ticker_is_alive(superuser_client):
    record_tick(heartbeat_id=register_heartbeat(interval=5), report=TickReport(0, 0, 1, 0.0))
    assert "No ticker is alive" not in superuser_client.get(LIST).content.decode()


def test_totals_follow_the_filters(superuser_client, projet, user, staff):
    running = running_fiche(projet, user)
    paused = running_fiche(projet, user)
    fiches.pause_fiche(fiche_id=paused.pk, actor=user)
    fiches.adjust_fiche(fiche_id=paused.pk, actor=staff, delta=timedelta(minutes=10), reason="x")
    response = superuser_client.get(LIST + "?etat__exact=en_pause")
    assert response.context["totals"]["count"] == 1
    assert response.context["totals"]["running"] == 0
    assert timedelta(minutes=10) <= timedelta(seconds=response.context["totals"]["seconds"]) < timedelta(minutes=11)
    assert running.pk not in [f.pk for f in response.context["cl"].result_list]


@pytest.mark.parametrize("action, etat", [("pause", Etat.EN_PAUSE), ("finish", Etat.TERMINEE)])
def test_actions_go_through_the_services_and_report_refusals(superuser_client, projet, user, action, etat):
    first = running_fiche(projet, user)
    second = running_fiche(projet, user)
    fiches.finish_fiche(fiche_id=second.pk, actor=user)
    response = superuser_client.post(LIST, {"action": action, "_selected_action": [first.pk, second.pk]}, follow=True)
    assert FicheTemps.objects.get(pk=first.pk).etat == etat
    assert FicheEvent.objects.filter(fiche_id=first.pk, kind={"pause": "paused", "finish": "finished"}[action]).exists()
    shown = messages_of(response)
    assert f"1 fiche {'paused' if action == 'pause' else 'finished'}." in shown
    assert f"#{second.pk} Travail: Cannot {action}: it is finished." in shown


def test_start_action(superuser_client, projet, user):
    fiche = fiches.create_fiche(projet_id=projet.pk, owner_id=user.pk, actor=user)
    superuser_client.post(LIST, {"action": "start", "_selected_action": [fiche.pk]})
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_CALCUL


def test_adjust_form_adds_an_audited_correction(superuser_client, superuser, projet, user):
    fiche = fiches.create_fiche(projet_id=projet.pk, owner_id=user.pk, actor=user)
    url = f"{LIST}{fiche.pk}/adjust/"
    assert superuser_client.get(url).status_code == 200
    response = superuser_client.post(url, {"delta": "0:30:00", "reason": "Réunion oubliée"})
    assert response.status_code == 302
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(minutes=30)
    event = FicheEvent.objects.filter(fiche=fiche, kind="adjusted").get()
    assert (event.actor, event.delta, event.reason) == (superuser, timedelta(minutes=30), "Réunion oubliée")
    response = superuser_client.post(url, {"delta": "-0:10:00", "reason": "Trop"})
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(minutes=20)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"delta": "-1:00:00", "reason": "x"}, "cannot go below zero"),
        ({"delta": "0:00:00", "reason": "x"}, "must not be zero"),
        ({"delta": "soon", "reason": "x"}, "Enter a valid duration."),
        ({"delta": "0:10:00", "reason": ""}, "This field is required."),
    ],
)
def test_adjust_form_refuses_bad_input_and_changes_nothing(superuser_client, projet, user, data, message):
    fiche = fiches.create_fiche(projet_id=projet.pk, owner_id=user.pk, actor=user)
    response = superuser_client.post(f"{LIST}{fiche.pk}/adjust/", data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(0)
    assert not FicheEvent.objects.filter(kind="adjusted").exists()


def test_adjust_of_an_unknown_fiche_is_404(superuser_client):
    assert superuser_client.get(f"{LIST}4242/adjust/").status_code == 404


def test_editing_a_label_never_writes_back_a_stale_time(superuser_client, projet, user):
    fiche = running_fiche(projet, user)
    change_url = f"{LIST}{fiche.pk}/change/"
    assert superuser_client.get(change_url).status_code == 200
    elapse(0.02)
    tick()  # the worker moves the time while the form is open
    ticked = FicheTemps.objects.get(pk=fiche.pk)
    response = superuser_client.post(
        change_url, {"projet": projet.pk, "owner": user.pk, "libelle": "Renommée", **inline_management()}
    )
    assert response.status_code == 302, response.context["adminform"].errors if response.context else ""
    saved = FicheTemps.objects.get(pk=fiche.pk)
    assert saved.libelle == "Renommée"
    assert (saved.temps_impute, saved.compte_jusqua, saved.etat) == (
        ticked.temps_impute,
        ticked.compte_jusqua,
        Etat.EN_CALCUL,
    )


def inline_management():
    prefix = "events"
    return {
        f"{prefix}-TOTAL_FORMS": "0",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "0",
    }


def test_adding_a_fiche_in_the_admin_goes_through_the_service(superuser_client, superuser, projet, user):
    response = superuser_client.post(
        f"{LIST}add/", {"projet": projet.pk, "owner": user.pk, "libelle": "Nouvelle", **inline_management()}
    )
    assert response.status_code == 302
    fiche = FicheTemps.objects.get(libelle="Nouvelle")
    assert fiche.etat == Etat.EN_PAUSE
    assert fiche.events.get().actor == superuser


def test_the_time_cannot_be_edited_directly(superuser_client, projet, user):
    fiche = running_fiche(projet, user)
    superuser_client.post(
        f"{LIST}{fiche.pk}/change/",
        {
            "projet": projet.pk,
            "owner": user.pk,
            "libelle": "x",
            "temps_impute": "99:00:00",
            "etat": "terminee",
            **inline_management(),
        },
    )
    fiche = FicheTemps.objects.get(pk=fiche.pk)
    assert fiche.temps_impute < timedelta(hours=1)
    assert fiche.etat == Etat.EN_CALCUL


def test_csv_export_follows_the_filters(superuser_client, projet, user):
    running = running_fiche(projet, user, "En cours")
    paused = running_fiche(projet, user, "En pause")
    fiches.pause_fiche(fiche_id=paused.pk, actor=user)
    response = superuser_client.get(f"{LIST}export/?etat__exact=en_calcul")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(b"".join(response).decode())))
    assert [row["id"] for row in rows] == [str(running.pk)]
    assert rows[0]["libelle"] == "En cours"
    assert float(rows[0]["temps_live_seconds"]) >= 0


def test_csv_export_needs_admin_access(projet, user):
    response = Client().get(f"{LIST}export/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_projects_show_their_total_time(superuser_client, projet, user, staff):
    fiche = fiches.create_fiche(projet_id=projet.pk, owner_id=user.pk, actor=user)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(hours=2), reason="x")
    response = superuser_client.get("/admin/timesheet/projet/")
    assert "2:00:00" in response.content.decode()


def test_heartbeats_and_events_are_read_only(superuser_client):
    alive = register_heartbeat(interval=5)
    record_tick(heartbeat_id=alive, report=TickReport(0, 0, 1, 0.0))
    register_heartbeat(interval=5)  # never ticked
    content = superuser_client.get("/admin/timesheet/tickerheartbeat/").content.decode()
    assert 'class="heartbeat-alive">alive<' in content
    assert 'class="heartbeat-stale">silent<' in content
    assert superuser_client.get("/admin/timesheet/tickerheartbeat/add/").status_code == 403
    assert superuser_client.get("/admin/timesheet/ficheevent/add/").status_code == 403


def test_inactive_projects_cannot_be_chosen_for_a_new_fiche(superuser_client, user):
    closed = Projet.objects.create(designation="Fermé", actif=False)
    response = superuser_client.post(
        f"{LIST}add/", {"projet": closed.pk, "owner": user.pk, "libelle": "x", **inline_management()}
    )
    assert response.status_code == 200
    assert not FicheTemps.objects.exists()


def test_an_owner_change_is_audited_with_the_acting_user(superuser_client, superuser, projet, user, other_user):
    fiche = running_fiche(projet, user)
    response = superuser_client.post(
        f"{LIST}{fiche.pk}/change/",
        {"projet": projet.pk, "owner": other_user.pk, "libelle": "Travail", **inline_management()},
    )
    assert response.status_code == 302
    event = FicheEvent.objects.filter(fiche=fiche).last()
    assert (event.kind, event.actor, event.changes) == (
        FicheEvent.Kind.UPDATED,
        superuser,
        {"owner": [user.pk, other_user.pk]},
    )
    assert event.reason == "owner alice → bob"
    saved = FicheTemps.objects.get(pk=fiche.pk)
    assert saved.owner == other_user
    assert saved.updated_at == event.at
    history = superuser_client.get(f"{LIST}{fiche.pk}/change/").content.decode()
    assert "owner alice → bob" in history


def test_a_fiche_on_a_project_deactivated_since_can_still_be_edited(superuser_client, projet, user):
    fiche = running_fiche(projet, user)
    Projet.objects.filter(pk=projet.pk).update(actif=False)
    response = superuser_client.post(
        f"{LIST}{fiche.pk}/change/",
        {"projet": projet.pk, "owner": user.pk, "libelle": "Renommée", **inline_management()},
    )
    assert response.status_code == 302, response.context["adminform"].errors if response.context else ""
    assert FicheTemps.objects.get(pk=fiche.pk).libelle == "Renommée"


def test_a_fiche_cannot_be_moved_to_an_inactive_project(superuser_client, projet, user):
    fiche = running_fiche(projet, user)
    closed = Projet.objects.create(designation="Fermé", actif=False)
    response = superuser_client.post(
        f"{LIST}{fiche.pk}/change/", {"projet": closed.pk, "owner": user.pk, "libelle": "x", **inline_management()}
    )
    assert response.status_code == 200
    assert "projet" in response.context["adminform"].errors
    assert FicheTemps.objects.get(pk=fiche.pk).projet == projet


def test_the_admin_speaks_french_when_language_code_says_so(superuser_client, projet, user, settings):
    settings.LANGUAGE_CODE = "fr"
    running_fiche(projet, user)
    content = superuser_client.get(LIST, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    for text in (
        "en calcul",
        "Exporter en CSV",
        "Aucun ticker",
        "Temps total de la 1 fiche",
        "Mettre en pause les fiches sélectionnées",
        "Temps imputé",
    ):
        assert text in content, text


def test_the_report_page_shows_rows_bars_and_exports(superuser_client, projet, user):
    running_fiche(projet, user)
    today = timezone.localdate().isoformat()
    response = superuser_client.get(f"{LIST}report/?from={today}&to={today}&group=day&by=owner,projet")
    page = response.content.decode()
    assert response.status_code == 200
    assert "report-bar-fill" in page and "alice" in page and projet.designation in page
    assert "/reports/export.xlsx?" in page
    bad = superuser_client.get(f"{LIST}report/?from=soon&to={today}").content.decode()
    assert "errornote" in bad


def test_a_lock_of_a_day_not_over_is_refused_on_the_form(superuser_client):
    today = timezone.localdate().isoformat()
    response = superuser_client.post("/admin/timesheet/lockedperiod/add/", {"until": today, "reason": "x"})
    assert response.status_code == 200
    assert "not over yet" in response.content.decode()
    yesterday = (timezone.localdate() - timedelta(days=2)).isoformat()
    assert superuser_client.post("/admin/timesheet/lockedperiod/add/", {"until": yesterday}).status_code == 302
    assert LockedPeriod.objects.get().created_by.username == "root"


def test_adding_a_fiche_for_an_inactive_owner_is_a_form_error_not_a_server_error(superuser_client, projet):
    gone = person("gone", is_active=False)
    response = superuser_client.post(
        f"{LIST}add/", {"projet": projet.pk, "owner": gone.pk, "libelle": "Nouvelle", **inline_management()}
    )
    assert response.status_code == 200  # the form again, with the service's refusal on it
    assert f"User {gone.pk} does not exist." in response.content.decode()
    assert not FicheTemps.objects.exists()


def test_editing_a_subscription_keeps_the_delivery_progress_made_meanwhile(superuser_client, monkeypatch):
    subscription = webhooks.create_subscription(name="old", url="https://example.org/hook", secret="s")
    edit = WebhookSubscriptionAdmin.save_form

    def a_worker_delivers_while_the_form_is_saved(self, request, form, change):
        # Between the admin's read of the row and its save: a worker moves the cursor and holds the lease.
        WebhookSubscription.objects.filter(pk=subscription.pk).update(cursor=41, attempts=3, lease_owner="worker")
        return edit(self, request, form, change)

    monkeypatch.setattr(WebhookSubscriptionAdmin, "save_form", a_worker_delivers_while_the_form_is_saved)
    response = superuser_client.post(
        f"/admin/timesheet/webhooksubscription/{subscription.pk}/change/",
        subscription_form(name="new", url=subscription.url, secret=subscription.secret),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    saved = WebhookSubscription.objects.get(pk=subscription.pk)
    assert saved.name == "new"
    assert (saved.cursor, saved.attempts, saved.lease_owner) == (41, 3, "worker")


def test_enabling_subscriptions_again_is_the_services_and_keeps_their_cursor(superuser_client):
    subscription = webhooks.create_subscription(name="hook", url="https://example.org/hook", secret="s")
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        active=False, attempts=9, cursor=7, disabled_reason="failing", failing_since=timezone.now()
    )
    response = superuser_client.post(
        "/admin/timesheet/webhooksubscription/",
        {"action": "enable", "_selected_action": [subscription.pk]},
        follow=True,
    )
    assert "1 subscription enabled." in messages_of(response)
    saved = WebhookSubscription.objects.get(pk=subscription.pk)
    assert (saved.active, saved.attempts, saved.cursor, saved.disabled_reason, saved.failing_since) == (
        True,
        0,
        7,
        "",
        None,
    )


def test_the_report_refuses_an_owner_that_is_not_an_id_on_the_page(superuser_client):
    response = superuser_client.get(f"{LIST}report/", {"owner": "²"})
    assert response.status_code == 200
    assert "&#x27;owner&#x27; must be a person&#x27;s id." in response.content.decode()


@pytest.mark.parametrize(
    "delta",
    ["10000000000000", "999999999 00:00:00", "P999999999D", "P9999999999D", "-999999999 00:00:00", "745:00:00"],
)
def test_an_adjustment_too_large_is_a_form_error_not_a_server_error(superuser_client, projet, user, delta):
    fiche = running_fiche(projet, user)
    response = superuser_client.post(f"{LIST}{fiche.pk}/adjust/", {"delta": delta, "reason": "typo"})
    content = response.content.decode()
    assert response.status_code == 200
    assert "An adjustment is at most 744 hours either way." in content or 'class="errorlist' in content
    assert not FicheEvent.objects.filter(kind=FicheEvent.Kind.ADJUSTED).exists()
