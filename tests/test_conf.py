"""The app's settings: each read from Django's settings, or its default when unset."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection

from timesheet.core import conf


def test_an_unset_setting_takes_its_default(settings):
    del settings.REPORT_ROUNDING_STEP_MINUTES
    assert conf.get("REPORT_ROUNDING_STEP_MINUTES") == 15


def test_a_set_setting_wins_over_its_default(settings):
    settings.STREAM_MAX_PER_USER = 9
    assert conf.get("STREAM_MAX_PER_USER") == 9


def test_a_setting_set_to_none_is_none_not_its_default(settings):
    settings.TICKER_SHARDS = None
    assert conf.get("TICKER_SHARDS") is None


def test_a_name_without_a_default_is_an_error():
    with pytest.raises(KeyError):
        conf.get("NO_SUCH_SETTING")


def test_the_tick_interval_is_seconds_as_a_float(settings):
    settings.INCREMENT_TIME_SECONDS = 2
    assert conf.tick_interval() == 2.0 and isinstance(conf.tick_interval(), float)
    del settings.INCREMENT_TIME_SECONDS
    assert conf.tick_interval() == 5.0


def test_a_configured_batch_size_wins_on_every_database(settings):
    settings.TICKER_BATCH_SIZE = "250"
    assert conf.batch_size() == 250


@pytest.mark.parametrize("vendor, size", [("sqlite", 5_000), ("postgresql", 100_000), ("oracle", 5_000)])
def test_the_default_batch_size_depends_on_the_database(settings, monkeypatch, vendor, size):
    settings.TICKER_BATCH_SIZE = None
    monkeypatch.setattr(conf, "connection", SimpleNamespace(vendor=vendor))
    assert conf.batch_size() == size


def test_the_default_batch_size_is_this_databases(settings):
    del settings.TICKER_BATCH_SIZE
    assert conf.batch_size() == {"sqlite": 5_000, "postgresql": 100_000}[connection.vendor]


def test_shards_default_to_one_and_read_a_number(settings):
    del settings.TICKER_SHARDS
    assert conf.shards() == 1
    settings.TICKER_SHARDS = "4"
    assert conf.shards() == 4


def test_max_running_is_none_for_no_limit_else_hours(settings):
    settings.FICHE_MAX_RUNNING_HOURS = None
    assert conf.max_running() is None
    settings.FICHE_MAX_RUNNING_HOURS = 1.5
    assert conf.max_running() == timedelta(hours=1, minutes=30)
    settings.FICHE_MAX_RUNNING_HOURS = 0
    assert conf.max_running() == timedelta(0)


def test_max_running_per_owner_defaults_to_one_and_zero_means_no_limit(settings):
    del settings.FICHE_MAX_RUNNING_PER_OWNER
    assert conf.max_running_per_owner() == 1
    settings.FICHE_MAX_RUNNING_PER_OWNER = 0
    assert conf.max_running_per_owner() == 0
    settings.FICHE_MAX_RUNNING_PER_OWNER = "3"
    assert conf.max_running_per_owner() == 3


def test_max_failure_and_stream_timings_are_floats(settings):
    settings.TICKER_MAX_FAILURE_SECONDS = 30
    settings.STREAM_POLL_SECONDS = "0.25"
    settings.STREAM_KEEPALIVE_SECONDS = 20
    assert (conf.max_failure_seconds(), conf.stream_poll_seconds(), conf.stream_keepalive_seconds()) == (
        30.0,
        0.25,
        20.0,
    )


def test_the_stream_timings_default(settings):
    del settings.STREAM_POLL_SECONDS, settings.STREAM_KEEPALIVE_SECONDS, settings.TICKER_MAX_FAILURE_SECONDS
    assert (conf.stream_poll_seconds(), conf.stream_keepalive_seconds(), conf.max_failure_seconds()) == (
        1.0,
        15.0,
        300.0,
    )
