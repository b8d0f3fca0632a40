"""API clients: Django's test client carrying a real token (made by the tokens service) per person."""

import pytest
from django.test import Client


class ApiClient:
    """A client for /api/v1 with `Authorization: Bearer <token>`; JSON in, the response out."""

    def __init__(self, token: str | None):
        self.token = token
        self.client = Client()

    def _headers(self, extra=None):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def get(self, path, **params):
        return self.client.get(f"/api/v1{path}", params, **self._headers())

    def post(self, path, body=None, **extra):
        return self.client.post(f"/api/v1{path}", body if body is not None else {}, content_type="application/json",
                                **self._headers(extra))

    def post_raw(self, path, raw: bytes | str, content_type="application/json"):
        return self.client.generic("POST", f"/api/v1{path}", raw, content_type=content_type, **self._headers())

    def patch(self, path, body):
        return self.client.patch(f"/api/v1{path}", body, content_type="application/json", **self._headers())

    def delete(self, path):
        return self.client.delete(f"/api/v1{path}", **self._headers())

    def upload(self, path, files: dict, data: dict | None = None):
        return self.client.post(f"/api/v1{path}", {**(data or {}), **files}, **self._headers())


@pytest.fixture
def api(people):
    """api("alice") → an ApiClient with a fresh personal token of alice's; api(None) → no credentials."""
    from tokens.services import token_create

    def client_for(name: str | None, **kwargs) -> ApiClient:
        if name is None:
            return ApiClient(None)
        user = people[name]
        return ApiClient(token_create(user=user, name=f"{name}'s test token", actor=user, **kwargs).secret)

    return client_for
