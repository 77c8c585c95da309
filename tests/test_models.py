import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from timesheet.models import seeing_everyones_fiches, sees_everyones_fiches

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
    }


def test_sees_everyones_fiches_agrees_with_djangos_permissions(people):
    for kind, (user, expected) in people.items():
        fresh = get_user_model().objects.get(pk=user.pk)
        assert sees_everyones_fiches(fresh) is expected, kind
        djangos = fresh.has_perm("timesheet.view_fichetemps") or fresh.has_perm("timesheet.change_fichetemps")
        assert djangos is expected, kind


def test_the_filter_for_many_users_holds_for_the_same_users_as_the_rule_for_one(people):
    expected = {user.pk for user, sees in people.values() if sees}
    found = set(get_user_model().objects.filter(seeing_everyones_fiches()).values_list("pk", flat=True))
    assert found == expected


def test_sees_everyones_fiches_reads_the_permissions_once_in_one_query(people, django_assert_num_queries):
    for kind in ("plain", "in a viewing group"):
        user = get_user_model().objects.get(pk=people[kind][0].pk)
        with django_assert_num_queries(1):
            first = sees_everyones_fiches(user)
        with django_assert_num_queries(0):
            assert sees_everyones_fiches(user) is first


def test_a_permission_granted_since_applies_to_the_user_read_again(people):
    user = people["plain"][0]
    assert not sees_everyones_fiches(user)
    user.user_permissions.add(permission("view_fichetemps"))
    assert sees_everyones_fiches(get_user_model().objects.get(pk=user.pk))
