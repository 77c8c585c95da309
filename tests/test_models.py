from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction

from timesheet.core import limits
from timesheet.models import (
    ACTING_ON_EVERYONES,
    SEEING_EVERYONES,
    FicheTemps,
    acts_on_everyones_fiches,
    sees_everyones_fiches,
    users_holding,
)

pytestmark = pytest.mark.django_db


def permission(codename):
    return Permission.objects.get(content_type__app_label="timesheet", codename=codename)


def person(name, *codenames, group=None, **fields):
    user = get_user_model().objects.create_user(name, password="x", **fields)
    user.user_permissions.add(*(permission(codename) for codename in codenames))
    if group is not None:
        user.groups.add(group)
    return user


@pytest.fixture
def people():
    viewers = Group.objects.create(name="viewers")
    viewers.permissions.add(permission("view_fichetemps"))
    changers = Group.objects.create(name="changers")
    changers.permissions.add(permission("change_fichetemps"))
    others = Group.objects.create(name="project viewers")
    others.permissions.add(permission("view_projet"))
    # Another app's permission of the same name grants nothing here.
    lookalike = Permission.objects.create(
        codename="view_fichetemps", name="Lookalike", content_type=ContentType.objects.get_for_model(Group)
    )
    elsewhere = person("lookalike")
    elsewhere.user_permissions.add(lookalike)
    return {
        "plain": (person("plain"), False),
        "may view": (person("viewer", "view_fichetemps"), True),
        "may change": (person("changer", "change_fichetemps"), True),
        "may only add": (person("adder", "add_fichetemps"), False),
        "in a viewing group": (person("grouped viewer", group=viewers), True),
        "in a changing group": (person("grouped changer", group=changers), True),
        "in another group": (person("project viewer", group=others), False),
        "superuser": (person("root", is_superuser=True), True),
        "inactive superuser": (person("gone root", is_superuser=True, is_active=False), False),
        "inactive viewer": (person("gone viewer", "view_fichetemps", is_active=False), False),
        "holding another app's view_fichetemps": (elsewhere, False),
    }


def test_the_rules_agree_with_djangos_permissions(people):
    for kind, (user, _sees) in people.items():
        fresh = get_user_model().objects.get(pk=user.pk)
        djangos_view, djangos_change = (fresh.has_perm(f"timesheet.{name}") for name in SEEING_EVERYONES)
        assert sees_everyones_fiches(fresh) is (djangos_view or djangos_change) is _sees, kind
        assert acts_on_everyones_fiches(fresh) is djangos_change, kind


def test_the_filter_for_many_users_holds_for_the_same_users_as_the_rules_for_one(people):
    User = get_user_model()
    for codenames, rule in ((SEEING_EVERYONES, sees_everyones_fiches), (ACTING_ON_EVERYONES, acts_on_everyones_fiches)):
        expected = {user.pk for user in User.objects.all() if rule(user)}
        assert set(User.objects.filter(users_holding(codenames)).values_list("pk", flat=True)) == expected


def test_the_filter_for_many_users_looks_up_each_way_of_holding_apart():
    # An OR over the outer joins of both ways would pair every holder with every group member.
    assert "OUTER JOIN" not in str(get_user_model().objects.filter(users_holding(SEEING_EVERYONES)).query)


def test_each_rule_reads_the_permissions_once_in_one_query(people, django_assert_num_queries):
    for kind in ("plain", "in a viewing group", "may change"):
        user = get_user_model().objects.get(pk=people[kind][0].pk)
        for rule in (sees_everyones_fiches, acts_on_everyones_fiches):
            with django_assert_num_queries(1):
                first = rule(user)
            with django_assert_num_queries(0):
                assert rule(user) is first


def test_superusers_and_inactive_users_are_judged_without_a_query(people, django_assert_num_queries):
    for kind in ("superuser", "inactive viewer"):
        user = get_user_model().objects.get(pk=people[kind][0].pk)
        with django_assert_num_queries(0):
            assert sees_everyones_fiches(user) is acts_on_everyones_fiches(user) is people[kind][1]


def test_a_permission_granted_since_applies_to_the_user_read_again(people):
    user = people["plain"][0]
    assert not sees_everyones_fiches(user)
    user.user_permissions.add(permission("view_fichetemps"))
    assert sees_everyones_fiches(get_user_model().objects.get(pk=user.pk))


def test_the_database_refuses_a_time_beyond_what_a_fiche_may_hold(projet, user):
    fiche = FicheTemps.objects.create(projet=projet, owner=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        FicheTemps.objects.filter(pk=fiche.pk).update(temps_impute=limits.STORED_TIME_MAX + timedelta(microseconds=1))
    if connection.vendor == "sqlite":  # a sum past 64 bits would be a float there: refused too
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE timesheet_fichetemps SET temps_impute = 9.3e18 WHERE id = %s", [fiche.pk])
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(0)
