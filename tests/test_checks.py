import pytest
from django.core.checks import run_checks
from django.test import override_settings


def errors():
    # databases=[]: the settings' checks, without Django's checks that query a database.
    return {error.id: error.msg for error in run_checks(databases=[]) if error.id.startswith("timesheet.")}


def test_default_settings_pass():
    assert errors() == {}


@pytest.mark.parametrize(
    "setting, value, check_id",
    [
        ("INCREMENT_TIME_SECONDS", 0, "timesheet.E001"),
        ("INCREMENT_TIME_SECONDS", -5, "timesheet.E001"),
        ("INCREMENT_TIME_SECONDS", "five", "timesheet.E001"),
        ("INCREMENT_TIME_SECONDS", float("nan"), "timesheet.E001"),
        ("INCREMENT_TIME_SECONDS", True, "timesheet.E001"),
        ("TICKER_BATCH_SIZE", 0, "timesheet.E002"),
        ("TICKER_BATCH_SIZE", 2.5, "timesheet.E002"),
        ("TICKER_MAX_FAILURE_SECONDS", -1, "timesheet.E003"),
        ("FICHE_MAX_RUNNING_HOURS", 0, "timesheet.E004"),
        ("FICHE_MAX_RUNNING_HOURS", "all day", "timesheet.E004"),
    ],
)
def test_a_bad_setting_is_a_check_error_naming_it(setting, value, check_id):
    with override_settings(**{setting: value}):
        found = errors()
    assert list(found) == [check_id]
    assert found[check_id].startswith(f"{setting} must be ")
    assert repr(value) in found[check_id]


@pytest.mark.parametrize(
    "setting, value",
    [("INCREMENT_TIME_SECONDS", 0.5), ("TICKER_BATCH_SIZE", 1), ("FICHE_MAX_RUNNING_HOURS", 10)],
)
def test_good_values_pass(setting, value):
    with override_settings(**{setting: value}):
        assert errors() == {}


# The shared store of several web processes ---------------------------------------------

REDIS_CACHE = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://r:6379"}}


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis://", "redis://cache:port/0", "redis://a b", "unix://"]
)
def test_a_redis_url_that_redis_cannot_use_is_an_error_naming_it(url):
    with override_settings(REDIS_URL=url):
        found = errors()
    assert list(found) == ["timesheet.E080"]
    assert found["timesheet.E080"] == f"REDIS_URL must be a redis://, rediss:// or unix:// URL; got {url!r}."


@pytest.mark.parametrize(
    "url", ["", "redis://127.0.0.1:6379/0", "rediss://:secret@cache.example.org:6380/1", "unix:///run/redis.sock"]
)
def test_redis_urls_that_redis_uses_pass(url):
    with override_settings(REDIS_URL=url):
        assert errors() == {}


def test_a_redis_url_without_the_redis_package_is_an_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "redis" else real(name, *args))
    with override_settings(REDIS_URL="redis://127.0.0.1:6379/0"):
        assert list(errors()) == ["timesheet.E081"]


@pytest.mark.parametrize(
    "workers, caches, warned",
    [("4", None, True), ("4", REDIS_CACHE, False), ("1", None, False), ("", None, False)],
)
def test_several_web_workers_without_a_shared_cache_are_warned_of(monkeypatch, workers, caches, warned):
    monkeypatch.setenv("WEB_CONCURRENCY", workers)
    with override_settings(**({"CACHES": caches} if caches else {})):
        found = errors()
    assert list(found) == (["timesheet.W080"] if warned else [])
    if warned:
        assert found["timesheet.W080"].startswith("WEB_CONCURRENCY is 4 but the cache is each process's own")
