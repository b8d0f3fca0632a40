"""The platform's outer walls: login throttling, the Content-Security-Policy, the database URL's options, and
a team switcher that refuses what is not a team id."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

REPO = Path(__file__).resolve().parents[1]


# --- login throttling (django-axes) --------------------------------------------------------------

def sign_in(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_thirty_wrong_passwords_lock_the_right_one_out(people, client):
    for _ in range(30):
        assert sign_in(client, "bob", "guess").status_code in (200, 429)

    response = sign_in(client, "bob", "pw-bob")

    assert response.status_code == 429
    assert "Sign-in locked" in response.content.decode() and "_auth_user_id" not in client.session
    assert client.get(reverse("dashboard")).status_code == 302  # still signed out


def test_a_lock_is_one_username_from_one_address_others_still_sign_in(people, client, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "bob", "guess")

    alice = sign_in(client, "alice", "pw-alice")

    assert alice.status_code == 302 and alice.url == reverse("dashboard")


def test_a_typo_or_two_then_the_right_password_signs_in(people, client, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "bob", "guess").status_code == 200  # the form again, "didn't match"

    response = sign_in(client, "bob", "pw-bob")

    assert response.status_code == 302 and client.get(reverse("dashboard")).status_code == 200


def test_the_admin_login_is_throttled_too(people, client, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("admin:login"), {"username": "admin", "password": "guess"})

    response = client.post(reverse("admin:login"), {"username": "admin", "password": "pw-admin"})

    assert response.status_code == 429


# --- Content-Security-Policy ---------------------------------------------------------------------

def policy(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def test_every_page_carries_a_strict_content_security_policy(login, client, skill, base_version):
    alice = login("alice")
    admin = login("admin")
    responses = [client.get(reverse("login")), alice.get(reverse("dashboard")), alice.get(reverse("matrix")),
                 alice.get(reverse("matrix_json")), admin.get(reverse("admin:index"))]

    for response in responses:
        directives = policy(response)
        assert directives["default-src"] == ["'self'"]
        assert directives["script-src"] == ["'self'"]  # no inline script, no eval, no CDN
        assert directives["style-src"] == ["'self'"]
        assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
        assert not any("http" in value or value == "*" for values in directives.values() for value in values)


INLINE = [
    (re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an on* event handler"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
    (re.compile(r"<style", re.I), "an inline <style>"),
    (re.compile(r"""src=["']https?://""", re.I), "a script or image from another origin"),
    (re.compile(r"""<link[^>]+href=["']https?://""", re.I), "a style sheet from another origin"),
]


def test_the_pages_need_nothing_the_policy_refuses(login, skill, base_version, make_candidate):
    version = make_candidate(skill)
    alice = login("alice")
    pages = [reverse(name) for name in ("dashboard", "skills", "upload", "jobs", "versions", "matrix", "approvals",
                                        "playground")]
    pages += [reverse("skill_detail", args=[skill.pk]), reverse("version_detail", args=[version.pk])]

    for url in pages:
        response = alice.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        for pattern, what in INLINE:
            assert not pattern.search(body), f"{url} has {what}: {pattern.search(body).group(0)!r}"


def test_no_template_or_script_needs_inline_code():
    templates = list((REPO / "frontend" / "templates").rglob("*.html"))
    assert templates
    for path in templates:
        text = path.read_text()
        for pattern, what in INLINE:
            assert not pattern.search(text), f"{path.relative_to(REPO)} has {what}"
    # htmx's own indicator <style> is switched off, so it injects nothing the policy refuses
    assert '"includeIndicatorStyles": false' in (REPO / "frontend/templates/frontend/base.html").read_text()


# --- DATABASE_URL --------------------------------------------------------------------------------

def test_database_url_keeps_its_query_options():
    from config.env import database_from_url

    config = database_from_url("postgres://accrete:s%40cret@db.example.com:6432/accrete?sslmode=require"
                               "&connect_timeout=5")

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["USER"], config["PASSWORD"]) == ("accrete", "accrete", "s@cret")
    assert (config["HOST"], int(config["PORT"])) == ("db.example.com", 6432)
    assert config["OPTIONS"] == {"sslmode": "require", "connect_timeout": 5}


@pytest.mark.parametrize("url, message", [
    ("mysql://u@h/db", "scheme 'mysql' is not supported"),
    ("postgres://u@h:5432", "names no database"),
    ("postgres://u@h:port/db", "cannot be parsed"),
])
def test_a_bad_database_url_fails_loudly(url, message):
    from django.core.exceptions import ImproperlyConfigured

    from config.env import database_from_url

    with pytest.raises(ImproperlyConfigured, match=message):
        database_from_url(url)


def test_sslmode_reaches_the_settings_a_process_starts_with():
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgres://u:p@db.example.com:5432/accrete?sslmode=require"}
    out = subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c",
                          "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'])"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'sslmode': 'require'}"


# --- the team switcher ---------------------------------------------------------------------------

@pytest.mark.parametrize("team_id", ["legal", "", "²", "9" * 40, "-1", "1.5"])
def test_the_team_switcher_ignores_what_is_not_a_team_id(login, people, team_id):
    alice = login("alice")

    response = alice.post(reverse("team_switch"), {"team_id": team_id, "next": "/skills/"})

    assert response.status_code == 302 and response.url == "/skills/"
    assert alice.session.get("team_id") is None


@pytest.mark.parametrize("team", ["9" * 40, "-5", "x"])
def test_the_audit_log_ignores_a_team_filter_that_is_no_team_id(login, people, team):
    response = login("admin").get(reverse("audit"), {"team": team})

    assert response.status_code == 200


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_browser_runs_every_page_under_the_policy_without_a_violation(open_browser, showcase):
    """Chromium enforces the header: no page may log a refused script, style or request, and the scripted
    parts (htmx polling the job page) still run."""
    from playwright.sync_api import expect

    from tests.fixtures.browser import sign_in

    page = open_browser()
    refused = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    sign_in(page, "alice")

    for url in ["/", "/skills/", "/upload/", "/jobs/", "/versions/", f"/versions/{showcase['blocked'].pk}/",
                "/forgetting-matrix/", "/approvals/", "/playground/", "/settings/tokens/", "/settings/webhooks/",
                "/api/v1/docs", f"/jobs/{showcase['job'].pk}/"]:
        page.goto(url)
        if url == "/api/v1/docs":  # the API's docs page renders the schema with its own (served) scripts
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Accrete API", timeout=15_000)
    type(showcase["job"]).objects.filter(pk=showcase["job"].pk).update(step=90)
    # (a locator, not wait_for_function: the policy refuses the eval that one runs in the page)
    expect(page.locator("[data-testid=job-step]")).to_have_text("90 / 120", timeout=10_000)

    assert refused == []


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_a_setting_that_is_not_a_finite_number_fails_loudly_at_start(value):
    """A NaN tolerance would compare False with every drop: the gate would never block."""
    done = subprocess.run([sys.executable, "manage.py", "check"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ACCRETE_PROBE_TOLERANCE": value})
    assert done.returncode != 0 and f"ACCRETE_PROBE_TOLERANCE='{value}' is not a finite number" in done.stderr
