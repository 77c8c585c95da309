"""The API's rate limits."""

from ninja.throttling import SimpleRateThrottle

from timesheet.core import conf


class TokenRateThrottle(SimpleRateThrottle):
    """Requests per token (``API_TOKEN_RATE``); session requests are not counted here."""

    scope = "token"

    def __init__(self):
        pass  # the rate is read at each request, so that a changed setting applies

    def allow_request(self, request):
        self.rate = conf.get("API_TOKEN_RATE")
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)

    def get_cache_key(self, request):
        api_token = getattr(request, "api_token", None)
        return None if api_token is None else self.cache_format % {"scope": self.scope, "ident": api_token.pk}
