"""Where webhooks may be sent: https, public addresses, the allowed networks; checked when a URL is saved."""

import threading

import pytest

from tests.support import signed_in, subscription_form
from timesheet.domain import destinations, webhooks
from timesheet.domain.errors import Code, Refused
from timesheet.models import WebhookSubscription

REFUSED_AT_SAVE = [
    "https://10.0.0.5/hook",
    "https://172.16.3.4/hook",
    "https://192.168.1.10:8443/hook",
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://hooks.localhost/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "https://[fd00::1]/hook",
    "https://[fe80::1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://[2002:a00:1::]/hook",  # 6to4 of 10.0.0.1
    "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "https://224.0.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[::]/hook",
    "https://240.0.0.1/hook",
    "https://100.64.0.1/hook",
    "ftp://example.org/hook",
    "file:///etc/passwd",
    "https://user:password@example.org/hook",
    "https:///hook",
]


@pytest.fixture(autouse=True)
def plain_http_allowed(settings):
    """http allowed, so that an address is refused for being one, not for its scheme."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = []


@pytest.mark.django_db
@pytest.mark.parametrize("url", REFUSED_AT_SAVE)
def test_a_private_or_reserved_address_or_another_scheme_is_refused_at_save(url):
    with pytest.raises(Refused) as refused:
        webhooks.create_subscription(name="hook", url=url, secret="s")
    assert refused.value.code == Code.INVALID
    assert not WebhookSubscription.objects.exists()


@pytest.mark.django_db
def test_http_is_refused_at_save_without_the_setting(settings):
    settings.WEBHOOK_ALLOW_HTTP = False
    with pytest.raises(Refused) as refused:
        webhooks.create_subscription(name="hook", url="http://example.org/hook", secret="s")
    assert refused.value.code == Code.INVALID
    assert "https" in refused.value.message
    webhooks.create_subscription(name="hook", url="https://example.org/hook", secret="s")


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["https://example.org/hook", "https://93.184.216.34/hook", "http://[2606:4700::1]/"])
def test_a_public_destination_is_saved(url):
    assert webhooks.create_subscription(name="hook", url=url, secret="s").url == url


@pytest.mark.django_db
def test_an_address_inside_the_allowed_networks_is_saved(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8", "10.1.0.0/16"]
    webhooks.create_subscription(name="hook", url="http://127.0.0.1:8080/hook", secret="s")
    webhooks.create_subscription(name="hook", url="https://10.1.2.3/hook", secret="s")
    webhooks.create_subscription(name="hook", url="https://[::ffff:10.1.2.3]/hook", secret="s")
    with pytest.raises(Refused):
        webhooks.create_subscription(name="hook", url="https://10.2.0.1/hook", secret="s")


@pytest.mark.django_db
def test_a_url_edited_to_a_private_address_is_refused_and_left_unchanged(user):
    subscription = webhooks.create_subscription(name="hook", url="https://example.org/hook", secret="s")
    with pytest.raises(Refused) as refused:
        webhooks.update_subscription(subscription_id=subscription.pk, actor=user, url="http://169.254.169.254/")
    assert refused.value.code == Code.INVALID
    assert WebhookSubscription.objects.get(pk=subscription.pk).url == "https://example.org/hook"
    webhooks.update_subscription(subscription_id=subscription.pk, actor=user, name="renamed")  # the URL unchecked


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://169.254.169.254/", "http://[::1]:8080/hook", "ftp://example.org/hook"])
def test_the_admin_form_shows_the_services_refusal_of_a_destination(superuser, url):
    response = signed_in(superuser).post("/admin/timesheet/webhooksubscription/add/", subscription_form(url=url))
    assert response.status_code == 200  # the form again
    assert response.context["adminform"].form.errors["url"]
    assert not WebhookSubscription.objects.exists()


@pytest.mark.django_db
def test_the_admin_form_saves_a_public_destination(superuser):
    response = signed_in(superuser).post("/admin/timesheet/webhooksubscription/add/", subscription_form())
    assert response.status_code == 302
    assert WebhookSubscription.objects.get().url == "https://example.org/hook"


def test_resolution_refuses_a_name_with_any_forbidden_address(monkeypatch):
    answers = [
        (2, 1, 6, "", ("93.184.216.34", 443)),
        (2, 1, 6, "", ("10.0.0.7", 443)),
    ]
    monkeypatch.setattr("socket.getaddrinfo", lambda *args, **kwargs: answers)
    with pytest.raises(destinations.DestinationRefused):
        destinations.resolve("hooks.example.com", 443, timeout=5)
    answers.pop()
    assert destinations.resolve("hooks.example.com", 443, timeout=5) == ["93.184.216.34"]


def test_resolution_that_outlasts_the_deadline_times_out(monkeypatch):
    never = threading.Event()
    monkeypatch.setattr("socket.getaddrinfo", lambda *args, **kwargs: never.wait(60))
    try:
        with pytest.raises(TimeoutError):
            destinations.resolve("hooks.example.com", 443, timeout=0.2)
    finally:
        never.set()


def test_the_add_form_shows_only_what_a_person_sets(superuser_client):
    page = superuser_client.get("/admin/timesheet/webhooksubscription/add/").content.decode()
    assert 'name="url"' in page
    assert "DatabaseDefault" not in page and "Last event delivered" not in page
