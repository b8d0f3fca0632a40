"""API tokens: created, used, expired, revoked; stored hashed; calls audited under the token's identity;
rate-limited per token; browser sessions keep their CSRF check."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from teams.permissions import RoleRequired
from tokens.models import ApiToken
from tokens.services import (
    TokenRefused,
    service_account_create,
    service_account_disable,
    token_create,
    token_revoke,
)


def _me(token: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return Client().get("/api/v1/me", **headers)


def test_a_token_works_until_it_is_revoked(people):
    new = token_create(user=people["alice"], name="laptop", actor=people["alice"])
    # when used
    response = _me(new.secret)
    # then it acts as alice, and its use is recorded
    assert response.status_code == 200 and response.json()["username"] == "alice"
    assert response.json()["token"] == f"acc_{new.token.prefix}_…"
    assert ApiToken.objects.get(pk=new.token.pk).last_used_at is not None
    # when revoked
    token_revoke(token=new.token, actor=people["alice"])
    # then
    response = _me(new.secret)
    assert response.status_code == 401 and response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert [e.action for e in AuditEvent.objects.order_by("id")] == ["token.created", "token.revoked"]


def test_an_expired_token_is_refused(people):
    new = token_create(user=people["alice"], name="short", actor=people["alice"], expires_in_days=1)
    assert _me(new.secret).status_code == 200
    ApiToken.objects.filter(pk=new.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert _me(new.secret).status_code == 401


def test_only_the_hash_is_stored_and_a_wrong_secret_with_a_real_prefix_fails(people):
    new = token_create(user=people["alice"], name="laptop", actor=people["alice"])
    row = ApiToken.objects.get(pk=new.token.pk)
    secret = new.secret.split("_", 2)[2]

    assert secret not in str(ApiToken.objects.values().get(pk=row.pk))
    assert new.secret not in str(list(AuditEvent.objects.values_list("data", flat=True)))
    forged = f"acc_{row.prefix}_{'A' * 43}"
    for bad in (forged, "acc_nothex", "", "Bearer", new.secret + "x", new.secret.upper()):
        assert _me(bad).status_code == 401, bad
    assert _me(None).status_code == 401


def test_an_inactive_user_or_a_disabled_service_account_cannot_call(people):
    new = token_create(user=people["vera"], name="t", actor=people["vera"])
    people["vera"].is_active = False
    people["vera"].save()
    assert _me(new.secret).status_code == 401

    account = service_account_create(team=people["legal"], name="ci", role="contributor", actor=people["bob"])
    machine = token_create(user=account.user, name="ci", actor=people["bob"])
    assert _me(machine.secret).json()["service_account"] is True
    service_account_disable(account=account, actor=people["bob"])
    assert _me(machine.secret).status_code == 401
    assert ApiToken.objects.get(pk=machine.token.pk).state() == "revoked"


def test_a_service_account_cannot_sign_in_to_the_browser(people):
    account = service_account_create(team=people["legal"], name="ci", role="viewer", actor=people["bob"])

    assert not account.user.has_usable_password()
    browser = Client()
    for password in ("", "!", account.user.password):
        response = browser.post("/login/", {"username": account.user.username, "password": password})
        assert response.status_code == 200 and "_auth_user_id" not in browser.session


def test_token_rules(people):
    with pytest.raises(TokenRefused, match="1 to 3650 days"):
        token_create(user=people["alice"], name="x", actor=people["alice"], expires_in_days=0)
    with pytest.raises(TokenRefused, match="Name the token"):
        token_create(user=people["alice"], name="  ", actor=people["alice"])
    with pytest.raises(RoleRequired, match="may not create tokens"):
        token_create(user=people["bob"], name="x", actor=people["alice"])
    # a skill owner cannot make a service account above their own role
    with pytest.raises(TokenRefused, match="cannot get more|one team role"):
        service_account_create(team=people["legal"], name="root", role="platform_admin", actor=people["bob"])


def test_a_signed_in_person_manages_tokens_through_the_api(api, people):
    browser = Client()
    browser.force_login(people["alice"])
    created = browser.post("/api/v1/tokens", {"name": "ci", "expires_in_days": 30}, content_type="application/json")
    assert created.status_code == 201
    alice = api("alice")
    secret = created.json()["token"]
    assert _me(secret).json()["username"] == "alice"
    listed = alice.get("/tokens").json()
    assert "token" not in listed[0] and {t["name"] for t in listed} == {"alice's test token", "ci"}
    # another user cannot revoke it
    assert api("bob").delete(f"/tokens/{created.json()['prefix']}").status_code == 404
    assert alice.delete(f"/tokens/{created.json()['prefix']}").status_code == 204
    assert _me(secret).status_code == 401


def test_a_change_through_the_api_is_audited_under_the_token(api, people, skill):
    bob = api("bob")
    prefix = bob.get("/me").json()["token"].split("_")[1]

    response = bob.post(f"/skills/{skill.slug}/archive")

    assert response.status_code == 200
    event = AuditEvent.objects.get(action="skill.archived")
    assert event.actor == people["bob"]
    assert event.actor_label == f"bob via token acc_{prefix}_…" and event.data["token"] == prefix


def test_calls_are_rate_limited_per_token(api, settings):
    settings.ACCRETE_API_RATE = "3/min"
    alice, bob = api("alice"), api("alice")  # two tokens of one person: counted apart

    answers = [alice.get("/me").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    limited = alice.get("/me")
    assert limited["Content-Type"] == "application/problem+json" and int(limited["Retry-After"]) > 0
    assert bob.get("/me").status_code == 200


def test_a_browser_session_keeps_its_csrf_check(people, skill):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(people["bob"])
    # reads need no CSRF token
    assert browser.get("/api/v1/me").status_code == 200
    # a write without one is refused, and nothing changes
    refused = browser.post(f"/api/v1/skills/{skill.slug}/archive")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    skill.refresh_from_db()
    assert skill.status == "active"
    # with the CSRF cookie and header, it goes through
    browser.get("/")  # any page with a form (the sign-out button) sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value
    assert browser.post(f"/api/v1/skills/{skill.slug}/archive", HTTP_X_CSRFTOKEN=csrf).status_code == 200


def test_a_bad_token_on_a_write_is_401_not_a_csrf_refusal(people, skill):
    # a real client sends no CSRF token; a revoked or forged token must read as "not authenticated"
    client = Client(enforce_csrf_checks=True)
    new = token_create(user=people["bob"], name="t", actor=people["bob"])
    token_revoke(token=new.token, actor=people["bob"])
    for token in (new.secret, "acc_000000000000_" + "A" * 43):
        response = client.post(f"/api/v1/skills/{skill.slug}/archive", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 401, response.content
    good = token_create(user=people["bob"], name="t2", actor=people["bob"]).secret
    assert client.post(f"/api/v1/skills/{skill.slug}/archive", HTTP_AUTHORIZATION=f"Bearer {good}").status_code == 200


def test_a_token_cannot_mint_credentials(api, people):
    # a token cannot outlive its expiry or revocation by making another one, nor make a service account
    bob = api("bob", expires_in_days=1)
    assert bob.post("/tokens", {"name": "forever", "expires_in_days": None}).status_code == 403
    assert bob.post("/teams/legal/service-accounts", {"name": "ci", "role": "viewer"}).status_code == 403
    account = service_account_create(team=people["legal"], name="ci", role="skill_owner", actor=people["bob"])
    assert bob.post(f"/service-accounts/{account.pk}/tokens", {"name": "x"}).status_code == 403
    assert ApiToken.objects.filter(user=account.user).count() == 0
    # nor can a service account, whichever way it is asked
    machine = type(bob)(token_create(user=account.user, name="ci", actor=people["bob"]).secret)
    with pytest.raises(RoleRequired, match="service account"):
        service_account_create(team=people["legal"], name="ci2", role="viewer", actor=account.user)
    with pytest.raises(RoleRequired, match="service account"):
        token_create(user=account.user, name="again", actor=account.user)
    assert machine.get("/me").json()["service_account"] is True


def test_the_audit_log_finds_a_persons_api_changes_by_their_name(api, people, skill):
    bob = api("bob")
    bob.post(f"/skills/{skill.slug}/archive")

    rows = api("admin").get("/audit", actor="bob", action="skill.").json()["items"]

    assert [r["action"] for r in rows] == ["skill.archived"] and rows[0]["actor"].startswith("bob via token")
