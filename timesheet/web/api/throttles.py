"""The API's rate limits."""

import logging
import threading
import time
from time import monotonic

from django.core.cache import cache
from django.http import HttpRequest
from ninja.throttling import BaseThrottle

from timesheet.core import conf

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
# How often a process says, at most, that the shared store does not answer.
STORE_DOWN_LOG_SECONDS = 60.0
# After the store failed to answer, how long a process lets token requests through without asking it:
# each ask of a store that does not answer holds one of the process's few request threads for the
# client's timeout.
STORE_RETRY_SECONDS = 5.0


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/min"`` as (600 requests, 60 seconds); the system check E008 vouches for its form."""
    count, period = rate.split("/")
    return int(count), PERIODS[period]


class TokenRateThrottle(BaseThrottle):
    """
    Requests per token (``API_TOKEN_RATE``, read at each request); session
    requests are not counted here.

    A fixed window that opens at the token's first request and lasts the
    rate's period: its count is one integer in the cache, opened with
    ``cache.add`` (SET NX with the period as its expiry) and counted with
    ``cache.incr`` (INCR), both atomic on Redis, so that any number of web
    processes and hosts sharing ``REDIS_URL`` count each request once and
    accept exactly the rate's number in a window, whatever runs at once.

    Why a fixed window rather than two weighted windows (a sliding
    estimate): the weighted estimate assumes the previous window's requests
    were spread evenly, so it lets a few more or fewer than the rate through
    near a window's edge; a fixed window's count is exact. Its cost is that a
    client may spend a whole window's budget at the end of one window and
    again at the start of the next (twice the rate over just more than one
    period, never more). Opening each token's window at its own first
    request, not on the clock's minute, keeps the tokens' windows apart.

    Requests past the rate are counted too (they never extend the window),
    and refused with 429 and ``Retry-After``: the seconds until the window
    ends. If the cache does not answer, requests are let through without
    asking it again for ``STORE_RETRY_SECONDS``, and each process logs it
    at most once a minute (a rate limit is not worth refusing every token
    request for, nor stalling the process on).
    """

    def __init__(self) -> None:
        self._wait = threading.local()  # one throttle serves every request: what wait() says is this request's
        self._store_down_logged = -STORE_DOWN_LOG_SECONDS
        self._store_skipped_until = 0.0

    def count(self, request: HttpRequest) -> None:
        """
        Count ``request`` now, for ``allow_request`` to answer later: called on
        the thread that authenticated its token, so that the store's round
        trips never hold the event loop (Ninja asks throttles on it).
        """
        request._token_rate_verdict = (self._allowed(request), self.wait())  # type: ignore[attr-defined]

    def allow_request(self, request: HttpRequest) -> bool:
        verdict = getattr(request, "_token_rate_verdict", None)
        if verdict is None:  # not counted yet (a synchronous stack): now
            return self._allowed(request)
        allowed, self._wait.seconds = verdict
        return bool(allowed)

    def _allowed(self, request: HttpRequest) -> bool:
        self._wait.seconds = None
        api_token = getattr(request, "api_token", None)
        if api_token is None or monotonic() < self._store_skipped_until:
            return True
        limit, period = parse_rate(conf.get("API_TOKEN_RATE"))
        # The period is in the key: a changed period opens a window of its length at once.
        key = f"throttle:token:{api_token.pk}:{period}"
        try:
            count, ends = self._count(key, period)
        except Exception:
            self._store_skipped_until = monotonic() + STORE_RETRY_SECONDS
            self._say_store_down()
            return True
        if count <= limit:
            return True
        self._wait.seconds = max(1.0, ends - time.time()) if ends is not None else float(period)
        return False

    def wait(self) -> float | None:
        """The seconds until the window of the request just refused ends (the 429's Retry-After)."""
        return getattr(self._wait, "seconds", None)

    @staticmethod
    def _count(key: str, period: int) -> tuple[int, float | None]:
        """This request's number in its window, and when the window ends (host clock; None if not known)."""
        ends_key = f"{key}:ends"
        for _attempt in range(3):
            if cache.add(key, 1, period):
                ends = time.time() + period
                cache.set(ends_key, ends, period)
                return 1, ends
            try:
                count = cache.incr(key)
            except ValueError:
                continue  # the window ended between the two calls: open the next one
            if count == 1:
                # Django's Redis incr is EXISTS then INCR: the window ended between the two and INCR
                # made the key again, without an expiry. Give it one: this request opens the next window.
                cache.touch(key, period)
                ends = time.time() + period
                cache.set(ends_key, ends, period)
                return 1, ends
            ends = cache.get(ends_key)
            if ends is None:
                # A window with no known end may have none: its key left without an expiry when the repair
                # above failed. Give it one from now, once: no token is refused for more than a period more.
                ends = time.time() + period
                cache.touch(key, period)
                cache.set(ends_key, ends, period)
            return count, ends
        return 1, None  # the window kept ending under us: nothing left to count against

    def _say_store_down(self) -> None:
        now = monotonic()
        if now - self._store_down_logged >= STORE_DOWN_LOG_SECONDS:
            self._store_down_logged = now
            logger.warning("The cache does not answer: API token requests are not rate-limited.", exc_info=True)


# The API's one token rate: its operations' throttle, and counted as each token is authenticated.
TOKEN_RATE = TokenRateThrottle()
