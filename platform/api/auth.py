"""Who calls: an API token (`Authorization: Bearer acc_…`), or a browser session (with its CSRF check on
every unsafe method). The token's user — a person or a service account — becomes request.user, so every
service sees the same actor as in the browser and the audit log records the token that acted."""

import hashlib

from django.conf import settings
from ninja.security import HttpBearer, SessionAuth
from ninja.throttling import SimpleRateThrottle

from tokens.services import token_authenticate


class TokenAuth(HttpBearer):
    def authenticate(self, request, token):
        found = token_authenticate(token)
        if found is None:
            return None
        request.user = found.user
        request.api_token = found
        return found


class BrowserSession(SessionAuth):
    """The signed-in browser user (the CSRF token is checked on unsafe methods). A call that carries an
    Authorization header is a token client's: when its token did not authenticate, the answer is 401, not a
    CSRF refusal meant for browsers."""

    def __call__(self, request):
        if "HTTP_AUTHORIZATION" in request.META:
            return None
        return super().__call__(request)


class PerTokenRate(SimpleRateThrottle):
    """ACCRETE_API_RATE per token (per user for a browser session), counted in the cache (Redis when
    ACCRETE_CACHE_URL is set, so every web process counts together)."""

    scope = "api"
    cache_format = "accrete_throttle_%(ident)s"

    def __init__(self):
        self.rate = None
        self.num_requests = self.duration = None

    def allow_request(self, request) -> bool:
        rate = settings.ACCRETE_API_RATE
        if not rate:
            return True
        self.rate = rate
        self.num_requests, self.duration = self.parse_rate(rate)
        return super().allow_request(request)

    def get_cache_key(self, request) -> str:
        token = getattr(request, "api_token", None)
        if token is not None:
            ident = f"token-{token.prefix}"
        elif getattr(request, "user", None) is not None and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = "ip-" + hashlib.sha256((self.get_ident(request) or "").encode()).hexdigest()[:16]
        return self.cache_format % {"ident": ident}
