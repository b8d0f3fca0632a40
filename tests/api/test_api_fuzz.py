"""Whatever a client sends, the answer is a 4xx problem document or a success — never a 500. Hypothesis
generates the bodies (any JSON, hostile strings, wrong types, raw bytes) and the path and query values."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HOSTILE = st.sampled_from(["\x00", "\ud800", "‮exe.jpg", "a" * 5000, "' OR 1=1 --", "../../etc/passwd",
                           "NaN", "1e999", "-1", "0", "v1", "{{7*7}}", "<script>", "%00"])
TEXT = st.one_of(st.text(max_size=40), HOSTILE)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                   st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
FIELDS = ["team", "slug", "name", "description", "scorer", "scorer_options", "teacher_style", "tolerance",
          "min_gain", "max_new_tokens", "skill", "method", "demonstration_set", "config", "comment", "decision",
          "url", "events", "active", "rotate_secret", "expires_in_days", "role", "learning_rate"]
# bodies that look like what the endpoints take, with any values
SHAPED = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6)
RAW = st.one_of(st.binary(max_size=200), st.sampled_from([b"NaN", b"[" * 5000, b'{"a": 1e999}', b'{"\\u0000": 1}',
                                                          b'"\\ud800"', b"1" * 500, b"{", b"null"]))

POSTS = ["/skills", "/jobs", "/tokens", "/webhooks", "/teams/legal/service-accounts", "/versions/{n}/promotion-requests",
         "/promotion-requests/{r}/decision", "/versions/{n}/gate/rerun", "/skills/policy-codes/archive",
         "/service-accounts/999/tokens", "/uploads/{t}/confirm"]
PATCHES = ["/skills/policy-codes", "/webhooks/{w}"]
GETS = ["/skills", "/jobs", "/versions", "/promotion-requests", "/skills/{s}", "/jobs/{i}", "/versions/{i}",
        "/versions/{i}/gate", "/demonstration-sets/{i}/download", "/audit", "/webhooks/{i}/deliveries"]

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


@pytest.fixture
def world(api, people, skill, base_version, open_request, fake_tasks, var_dir):
    from webhooks.services import webhook_endpoint_create

    request = open_request(skill)
    endpoint = webhook_endpoint_create(team=people["legal"], url="https://example.org/h", actor=people["bob"])
    return {"bob": api("bob"), "n": request.version.number, "r": request.pk, "w": endpoint.pk, "t": "0" * 32}


def _fill(path: str, world: dict) -> str:
    return path.format(**{k: world[k] for k in ("n", "r", "w", "t")})


def _check(response):
    assert response.status_code < 500, response.content[:500]
    if response.status_code >= 400:
        assert response["Content-Type"] == "application/problem+json", response.content[:200]
        body = response.json()
        assert body["status"] == response.status_code and body["detail"]


@FUZZ
@given(path=st.sampled_from(POSTS + PATCHES), body=st.one_of(SHAPED, JSON))
def test_any_json_body_gets_a_4xx_or_a_success(world, path, body):
    client = world["bob"]
    url = _fill(path, world)
    response = client.patch(url, body) if path in PATCHES else client.post(url, body)
    _check(response)


@FUZZ
@given(path=st.sampled_from(POSTS), raw=RAW)
def test_any_raw_body_gets_a_4xx_or_a_success(world, path, raw):
    _check(world["bob"].post_raw(_fill(path, world), raw))


@FUZZ
@given(path=st.sampled_from(GETS), value=st.one_of(TEXT, st.integers(min_value=-(10**25), max_value=10**25)),
       query=st.dictionaries(st.sampled_from(["limit", "offset", "status", "team", "skill", "awaiting_me",
                                              "after_step", "action"]), TEXT, max_size=3))
def test_any_path_or_query_value_gets_a_4xx_or_a_success(world, path, value, query):
    from urllib.parse import quote, urlencode

    def encoded(text) -> str:  # as a client puts any text in a URL: UTF-8 bytes, percent-encoded
        return quote(str(text).encode("utf-8", "surrogatepass"), safe="")

    url = path.replace("{s}", encoded(value)).replace("{i}", encoded(value))
    query_string = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()})
    _check(world["bob"].get(f"{url}?{query_string}" if query_string else url))


def test_a_refused_body_says_why(world):
    response = world["bob"].post_raw("/skills", b'{"team": "legal", "slug": "x", "name": NaN}')
    assert response.status_code == 400
    assert "NaN" in response.json()["detail"]
    response = world["bob"].post("/skills", {"team": "legal", "slug": "x", "name": "x", "tolerance": "high"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["tolerance"]
    assert json.loads(response.content)["errors"][0]["pointer"] == "#/tolerance"
