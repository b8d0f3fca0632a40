"""The API describes itself: a valid OpenAPI document, and docs that work with no network (no CDN)."""

import re

from django.contrib.staticfiles import finders
from django.test import Client
from openapi_spec_validator import validate


def test_the_openapi_schema_validates_and_lists_the_resources(db):
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()

    validate(schema)  # raises on an invalid document

    paths = set(schema["paths"])
    for path in ("/api/v1/skills", "/api/v1/skills/{slug}/uploads", "/api/v1/uploads/{token}/confirm",
                 "/api/v1/demonstration-sets/{pk}/download", "/api/v1/demonstration-sets/{pk}/readiness",
                 "/api/v1/jobs", "/api/v1/jobs/{pk}/cancel", "/api/v1/jobs/{pk}/metrics", "/api/v1/versions/{number}/gate",
                 "/api/v1/versions/{number}/gate/rerun", "/api/v1/forgetting-matrix", "/api/v1/promotion-requests/{pk}/decision",
                 "/api/v1/production", "/api/v1/audit", "/api/v1/tokens", "/api/v1/webhooks",
                 "/api/v1/webhooks/{pk}/deliveries", "/api/v1/webhook-deliveries/{pk}/redeliver"):
        assert path in paths, path
    schemes = schema["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} >= {"http", "apiKey"}


def test_the_docs_page_loads_only_assets_this_server_serves(db):
    page = Client().get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()

    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    for asset in assets:
        assert asset.startswith("/static/")
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file this project ships"
    assert "<script>" not in html  # the CSP forbids inline scripts: the docs page has none


def test_every_problem_type_says_what_it_means(api):
    from api.problems import _MAPPED, PROBLEM_TYPES

    refused = api("vera").post("/skills", {"team": "legal", "slug": "x", "name": "X"})
    assert refused.status_code == 403
    meaning = Client().get(refused.json()["type"])  # a relative URI on this server, no credential needed
    assert meaning.status_code == 200 and meaning.json()["code"] == "role-required"
    assert {code for _, _, code in _MAPPED} <= set(PROBLEM_TYPES)
    assert Client().get("/api/v1/problems/no-such-thing").status_code == 404
