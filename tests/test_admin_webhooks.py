"""The webhook subscription admin: values not saved yet, event kinds as checkboxes, and its pages' titles."""

import re

import pytest
from django.contrib import admin
from django.utils import timezone

from tests.support import subscription_form
from timesheet.domain import webhooks
from timesheet.models import FicheEvent, NotificationKind, WebhookSubscription
from timesheet.web.admin.webhooks import SubscriptionForm, WebhookSubscriptionAdmin

pytestmark = pytest.mark.django_db

ADMIN = "/admin/timesheet/webhooksubscription/"


def subscribe(**fields):
    return webhooks.create_subscription(**{"name": "hook", "url": "https://example.org/hook", "secret": "s", **fields})


def form_data(**fields):
    """The add or change form filled in, event kinds as the checkboxes send them (none checked: no field)."""
    data = subscription_form(**fields)
    if "kinds" not in fields:
        del data["kinds"]
    return data


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_change_page_never_shows_a_database_default(superuser_client, settings, language):
    settings.LANGUAGE_CODE = language
    subscription = subscribe()
    page = superuser_client.get(f"{ADMIN}{subscription.pk}/change/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert "DatabaseDefault" not in page
    assert "None" not in re.sub(r"<[^>]+>", " ", page)  # a value not set is the admin's empty value
    saved = WebhookSubscription.objects.get(pk=subscription.pk)
    for instant in (saved.created_at, saved.next_attempt_at):
        assert timezone.localtime(instant).strftime("%Y-%m-%d %H:%M") in page


def test_a_subscription_just_created_shows_its_dates(superuser_client):
    response = superuser_client.post(f"{ADMIN}add/", {**form_data(), "_continue": "1"}, follow=True)
    page = response.content.decode()
    assert response.status_code == 200
    assert "DatabaseDefault" not in page
    saved = WebhookSubscription.objects.get()
    assert timezone.localtime(saved.created_at).strftime("%Y-%m-%d %H:%M") in page


def test_values_not_saved_yet_read_as_nothing():
    model_admin = WebhookSubscriptionAdmin(WebhookSubscription, admin.site)
    unsaved = WebhookSubscription(name="new")
    assert model_admin.next_attempt(unsaved) == model_admin.get_empty_value_display()
    assert model_admin.created(unsaved) == model_admin.get_empty_value_display()
    assert model_admin.failing(unsaved) == model_admin.get_empty_value_display()


def test_event_kinds_are_checkboxes_of_every_kind(superuser_client):
    page = superuser_client.get(f"{ADMIN}add/").content.decode()
    boxes = re.findall(r'<input type="checkbox" name="kinds" value="([^"]+)"', page)
    assert boxes == [*FicheEvent.Kind.values, *NotificationKind.values]
    assert "Empty for every kind of event." in page or "every kind" in page


def test_the_kinds_field_follows_the_kinds_the_model_knows(monkeypatch):
    form = SubscriptionForm()
    assert list(form.fields["kinds"].choices) == [*FicheEvent.Kind.choices, *NotificationKind.choices]


def test_checked_kinds_are_stored_as_a_list_and_none_checked_is_every_kind(superuser_client):
    response = superuser_client.post(f"{ADMIN}add/", form_data(name="some", kinds=["started", "paused"]))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert WebhookSubscription.objects.get(name="some").kinds == ["started", "paused"]
    response = superuser_client.post(f"{ADMIN}add/", form_data(name="all"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert WebhookSubscription.objects.get(name="all").kinds == []


def test_a_subscriptions_kinds_are_checked_and_changed_on_its_page(superuser_client):
    subscription = subscribe(kinds=["paused"])
    page = superuser_client.get(f"{ADMIN}{subscription.pk}/change/").content.decode()
    assert re.search(r'<input type="checkbox" name="kinds" value="paused"[^>]*checked', page)
    assert not re.search(r'<input type="checkbox" name="kinds" value="started"[^>]*checked', page)
    response = superuser_client.post(f"{ADMIN}{subscription.pk}/change/", form_data(kinds=["started", "finished"]))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert WebhookSubscription.objects.get(pk=subscription.pk).kinds == ["started", "finished"]


def test_a_kind_that_does_not_exist_is_a_form_error(superuser_client):
    response = superuser_client.post(f"{ADMIN}add/", form_data(kinds=["started, paused"]))
    assert response.status_code == 200
    assert "kinds" in response.context["adminform"].form.errors
    assert not WebhookSubscription.objects.exists()


def test_the_add_page_has_a_title_of_its_own(superuser_client, settings):
    response = superuser_client.get(f"{ADMIN}add/")
    assert response.context["title"] == "Add a webhook subscription"
    settings.LANGUAGE_CODE = "fr"
    page = superuser_client.get(f"{ADMIN}add/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Ajout de abonnement" not in page


def test_the_change_page_has_a_title_of_its_own(superuser_client, settings):
    subscription = subscribe()
    settings.LANGUAGE_CODE = "fr"
    page = superuser_client.get(f"{ADMIN}{subscription.pk}/change/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Modification de abonnement" not in page
