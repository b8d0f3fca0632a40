"""Who is acting, for changes recorded by signal (a role granted in the admin, a user deactivated): the
signed-in user of the request being served, or None (the system: a shell, a worker, a migration).

Services pass their actor explicitly; this is only for the changes no service makes, which Django's
admin, a shell or a fixture make with plain save() and delete()."""

from contextlib import contextmanager
from contextvars import ContextVar

_request = ContextVar("audit_request", default=None)
_operator = ContextVar("audit_operator", default="")


@contextmanager
def operating_as(label: str):
    """Inside, changes made without a user (actor None) are recorded under `label` — the operator running a
    management command — instead of "system"."""
    token = _operator.set(label[:150])
    try:
        yield
    finally:
        _operator.reset(token)


def acting_operator() -> str:
    return _operator.get()


def acting_user():
    """The signed-in user of the current request, or None outside a request or when nobody is signed in."""
    request = _request.get()
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def acting_token():
    """The API token the current request authenticated with (set on the request by the API), or None."""
    return getattr(_request.get(), "api_token", None)


class AuditActorMiddleware:
    """Remembers the request for the length of its handling (after AuthenticationMiddleware). The request,
    not its user: request.user stays lazy, so a request that changes nothing costs no query."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)
