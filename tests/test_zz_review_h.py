import time

import pytest
from django.test import Client

from tests.factories import person, team
from tests.test_api_timesheets import act

pytestmark = pytest.mark.django_db


def test_an_ancient_week_breaks_the_leads_pages(superuser_client):
    lead, a, b = person("lena"), person("a"), person("b")
    team("Crew", members=[a, b], leads=[lead])
    other = Client(); other.force_login(b)
    assert act(other, b, "2026-W49", "submit").status_code == 200  # an ordinary week waiting
    member, boss = Client(), Client(raise_request_exception=False)
    member.force_login(a); boss.force_login(lead)
    assert act(member, a, "0003-W02", "submit").status_code == 200  # any member, through the API
    for url in ("/", "/weeks", "/api/timesheets/"):
        t = time.perf_counter(); r = boss.get(url); print(url, r.status_code, round(time.perf_counter() - t, 1), "s")
    assert act(boss, a, "0003-W02", "reject", {"reason": "x"}).status_code == 200
    for url in ("/api/timesheets/",):
        t = time.perf_counter(); r = boss.get(url); print(url, r.status_code, round(time.perf_counter() - t, 1), "s")
