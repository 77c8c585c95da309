"""Rounding of reported time: Rule.apply in Python and Rule.sql in the database agree, per project or by default."""

import random

import pytest
from django.db import connection

from tests.factories import project
from timesheet.domain.rounding import MICROSECONDS, Rule, default_rule, project_rules, rules_sql
from timesheet.models import Projet, Rounding

MINUTE = 60 * MICROSECONDS
RULES = [Rule(mode, step) for mode in Rounding.values for step in (1, 6, 15, 60)]


def values_around(step_minutes):
    """Values at, just around and halfway between multiples of the step, and random ones: microseconds, from 0."""
    step = step_minutes * MINUTE
    edges = {0, 1, 2}
    for k in (1, 2, 7, 100, 10_000):
        for delta in (-step // 2 - 1, -step // 2, -step // 2 + 1, -1, 0, 1):
            edges.add(k * step + delta)
    randomly = random.Random(step_minutes)
    edges.update(randomly.randrange(0, 1000 * 3600 * MICROSECONDS) for _ in range(200))
    return sorted(value for value in edges if value >= 0)


def rounded_by_the_database(sql, values, params=()):
    """``sql`` (with its ``params``) over rows of integer columns ``projet_id`` and ``us``, computed by the database."""
    rows = ", ".join(["(%s, %s)"] * len(values))
    table = f"SELECT CAST(column1 AS BIGINT) AS projet_id, CAST(column2 AS BIGINT) AS us FROM (VALUES {rows}) AS v"
    flat = [part for projet_id, us in values for part in (projet_id, us)]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT projet_id, us, {sql} FROM ({table}) AS t", [*params, *flat])
        return {(projet_id, us): rounded for projet_id, us, rounded in cursor.fetchall()}


@pytest.mark.django_db
@pytest.mark.parametrize("rule", RULES, ids=lambda rule: f"{rule.mode}-{rule.step_minutes}")
def test_the_database_rounds_as_python_does(rule):
    values = values_around(rule.step_minutes)
    by_database = rounded_by_the_database(rule.sql("us"), [(0, value) for value in values])
    assert by_database == {(0, value): rule.apply(value) for value in values}


@pytest.mark.parametrize(
    "rule, value, rounded",
    [
        (Rule("up", 15), 1, 15 * MINUTE),
        (Rule("up", 15), 15 * MINUTE, 15 * MINUTE),
        (Rule("up", 15), 15 * MINUTE + 1, 30 * MINUTE),
        (Rule("down", 15), 15 * MINUTE - 1, 0),
        (Rule("nearest", 15), 7 * MINUTE + 30 * MICROSECONDS - 1, 0),
        (Rule("nearest", 15), 7 * MINUTE + 30 * MICROSECONDS, 15 * MINUTE),
        (Rule("none", 15), 7 * MINUTE + 1, 7 * MINUTE + 1),
        (Rule("up", 15), 0, 0),
        (Rule("up", 15), -1, -15 * MINUTE),
        (Rule("down", 15), -(15 * MINUTE - 1), 0),
        (Rule("nearest", 60), -30 * MINUTE, -60 * MINUTE),
    ],
)
def test_a_rule_rounds_to_a_multiple_of_its_step_and_negatives_as_their_magnitude(rule, value, rounded):
    assert rule.apply(value) == rounded


def test_no_rounding_leaves_the_column_and_the_value_alone():
    assert Rule("none", 15).sql("us") == "us"
    assert Rule("none", 15).step == 0
    assert Rule("up", 0).sql("us") == "us" and Rule("up", 0).apply(123) == 123


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        Rule("sideways", 15).apply(1)


def test_a_rule_describes_itself():
    assert Rule("up", 6).describe() == {"mode": "up", "step_minutes": 6}


def test_the_default_rule_is_the_sites(settings):
    settings.REPORT_ROUNDING, settings.REPORT_ROUNDING_STEP_MINUTES = "nearest", "6"
    assert default_rule() == Rule("nearest", 6)
    del settings.REPORT_ROUNDING, settings.REPORT_ROUNDING_STEP_MINUTES
    assert default_rule() == Rule("none", 15)


@pytest.mark.django_db
def test_projects_take_the_default_for_what_they_leave_empty(settings):
    settings.REPORT_ROUNDING, settings.REPORT_ROUNDING_STEP_MINUTES = "down", 30
    plain = project("Sans règle")
    mode_only = project("Mode seul", rounding=Rounding.UP)
    step_only = project("Pas seul", rounding_step_minutes=6)
    both = project("Les deux", rounding=Rounding.NEAREST, rounding_step_minutes=60)
    rules = project_rules()
    assert plain.pk not in rules
    assert rules == {mode_only.pk: Rule("up", 30), step_only.pk: Rule("down", 6), both.pk: Rule("nearest", 60)}


@pytest.mark.django_db
def test_without_project_rules_the_sql_is_the_defaults():
    params = []
    assert rules_sql({}, Rule("up", 15), "us", params) == Rule("up", 15).sql("us")
    assert params == []


@pytest.mark.django_db
def test_each_row_is_rounded_by_its_projects_rule_in_the_database(projet):
    other = Projet.objects.create(designation="Autre")
    rules, default = {projet.pk: Rule("up", 15), other.pk: Rule("down", 60)}, Rule("nearest", 6)
    params = []
    sql = rules_sql(rules, default, "us", params)
    assert params == [projet.pk, other.pk]
    unruled = other.pk + 1
    values = [(pk, value) for pk in (projet.pk, other.pk, unruled) for value in values_around(15)]
    by_database = rounded_by_the_database(sql, values, params)
    expected = {(pk, value): rules.get(pk, default).apply(value) for pk, value in values}
    assert by_database == expected
