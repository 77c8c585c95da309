"""
Two web processes (real uvicorns) on one database and one Redis, as the
README's deployment runs several workers: the sign-in throttle, a token's
rate and a person's stream cap are each counted once, whichever process a
request reaches.
"""

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.fixtures.processes import WebProcess
from tests.support import WAIT, wait_until
from timesheet.domain import tokens

pytest.importorskip("uvicorn")
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAILURE_LIMIT = 3
RATE = 30
STREAM_CAP = 2


@pytest.fixture
def webs(worker_env, redis_url, tmp_path):
    """Two web processes sharing the test database and the tests' Redis, with small budgets to count."""
    env = {
        **worker_env,
        "DJANGO_DATA_DIR": str(tmp_path),
        "REDIS_URL": redis_url,
        "AXES_FAILURE_LIMIT": str(FAILURE_LIMIT),
        "API_TOKEN_RATE": f"{RATE}/min",
        "STREAM_MAX_PER_USER": str(STREAM_CAP),
    }
    started = [WebProcess(env, tmp_path / f"web-{n}.log") for n in range(2)]
    try:
        for web in started:
            wait_until(web.answers, every=0.1, message=f"uvicorn did not answer in time: {web.log_path.read_text()}")
        yield started
    finally:
        for web in started:
            web.stop()


def request(url, *, body=None, token=None):
    """(status, headers, response or None): the response is left open (a stream) only on a 200."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    data = json.dumps(body).encode() if body is not None else None
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=WAIT)
    except urllib.error.HTTPError as refused:
        refused.read()
        refused.close()
        return refused.code, refused.headers, None
    return response.status, response.headers, response


def sign_in(web, password):
    status, _headers, response = request(f"{web.url}/api/login", body={"username": "dana", "password": password})
    if response is not None:
        response.close()
    return status


def test_failed_sign_ins_alternating_between_the_processes_lock_out_at_the_limit(webs):
    # Hashed the way the servers' own settings check it (the tests' settings use a faster hasher).
    password = PBKDF2PasswordHasher().encode("multi-pass", PBKDF2PasswordHasher().salt())
    get_user_model().objects.create(username="dana", password=password)
    assert [sign_in(web, "multi-pass") for web in webs] == [200, 200]  # either process signs dana in

    failures = [sign_in(webs[n % 2], "wrong") for n in range(FAILURE_LIMIT)]

    # Counted once across both: the failure that reaches the limit is refused, and so is the right password.
    assert failures == [401] * (FAILURE_LIMIT - 1) + [429]
    assert [sign_in(web, "multi-pass") for web in webs] == [429, 429]


def test_a_tokens_requests_racing_across_the_processes_get_exactly_its_rate(webs):
    owner = get_user_model().objects.create_user("tess")
    _token, raw = tokens.create_token(user=owner, name="script")

    def one(n):
        status, headers, response = request(f"{webs[n % 2].url}/api/fiches/", token=raw)
        if response is not None:
            response.close()
        return status, headers.get("Retry-After")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(100)))

    statuses = [status for status, _ in answers]
    assert statuses.count(200) == RATE and statuses.count(429) == 100 - RATE, statuses
    assert all(0 < int(retry) <= 60 for status, retry in answers if status == 429)


def test_a_persons_streams_opened_across_the_processes_are_capped_once(webs):
    owner = get_user_model().objects.create_user("sam")
    _token, raw = tokens.create_token(user=owner, name="watch")
    opened = []
    try:
        statuses = []
        for n in range(STREAM_CAP + 2):
            status, _headers, response = request(f"{webs[n % 2].url}/api/fiches/stream", token=raw)
            statuses.append(status)
            if response is not None:
                opened.append(response)  # held open while the others are asked for
        assert statuses.count(200) == STREAM_CAP and statuses.count(429) == 2, statuses
    finally:
        for response in opened:
            response.close()
