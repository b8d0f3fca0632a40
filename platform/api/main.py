"""/api/v1: the machine interface, over the same services and selectors as the browser (so it cannot walk
around a rule). OpenAPI at /api/v1/openapi.json, interactive docs at /api/v1/docs (assets served from
this server: no CDN)."""

from ninja import NinjaAPI
from ninja.parser import Parser

from api import problems
from api.auth import BrowserSession, PerTokenRate, TokenAuth
from api.routes import account, export, jobs, skills, versions
from skills.parsing import load_json

DESCRIPTION = """
The Accrete platform's HTTP API. Authenticate with `Authorization: Bearer acc_…` (a personal token or a
team service account's, created under Settings → API tokens), or from a signed-in browser (CSRF token
required on unsafe methods). Every role and team-privacy rule of the browser applies.

Errors are problem details (RFC 9457, `application/problem+json`): `status`, `title`, `detail`, a `code`,
and `errors` naming each field (a JSON pointer) or file and line to fix. Lists are paged
(`limit`, `offset` → `count`, `items`). Calls are rate-limited per token (HTTP 429 with `Retry-After`).
"""

class StrictJSON(Parser):
    """Bodies are read like uploaded rows (skills.parsing.load_json): NaN, Infinity, NUL characters, lone
    surrogates, 100-digit numbers and deep nesting are refused with a 400 naming the problem, before any
    service or database sees them."""

    def parse_body(self, request):
        return load_json(request.body)


api = NinjaAPI(title="Accrete API", version="1", description=DESCRIPTION, urls_namespace="api-v1",
               auth=[TokenAuth(), BrowserSession()], throttle=[PerTokenRate()], docs_url="/docs",
               openapi_url="/openapi.json", parser=StrictJSON())
problems.install(api)


@api.get("/problems/{code}", auth=None, include_in_schema=True, tags=["meta"],
         summary="What a problem type (the `type` of an error document) means")
def problem_type(request, code: str) -> dict:
    if code not in problems.PROBLEM_TYPES:
        raise problems.Problem(404, f"No problem type {code!r}.", code="not-found")
    return {"type": f"{problems.PROBLEM_BASE}{code}", "code": code, "description": problems.PROBLEM_TYPES[code]}

api.add_router("", account.router)
api.add_router("", skills.router)
api.add_router("", jobs.router)
api.add_router("", versions.router)
api.add_router("", export.router)
