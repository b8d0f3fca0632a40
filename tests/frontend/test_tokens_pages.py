"""The API tokens page: personal tokens (shown once, stored as a hash, revocable) and, for skill owners,
their team's service accounts, whose tokens act with the account's role."""

import hashlib
import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from tokens.models import ApiToken, ServiceAccount

TOKEN = re.compile(r"acc_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def create_token(client, name="CI pipeline", expires_in="90") -> str:
    """Create a personal token on the page; the token the response shows."""
    response = client.post(reverse("tokens"), {"token-name": name, "token-expires_in": expires_in})
    assert response.status_code == 200
    shown = set(TOKEN.findall(response.content.decode()))
    assert len(shown) == 1, shown
    return shown.pop()


def create_service_account(client, team, name="ci-pipeline", role="viewer"):
    return client.post(reverse("service_account_new", args=[team.pk]),
                       {f"team-{team.pk}-name": name, f"team-{team.pk}-role": role})


def issue_token(client, account, name="deploy", expires_in="30") -> str:
    response = client.post(reverse("service_account_token", args=[account.pk]),
                           {f"account-{account.pk}-name": name, f"account-{account.pk}-expires_in": expires_in})
    assert response.status_code == 200
    shown = set(TOKEN.findall(response.content.decode()))
    assert len(shown) == 1, shown
    return shown.pop()


def api_me(token: str):
    return Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(login, people):
    bob = login("bob")

    token = create_token(bob)

    row = ApiToken.objects.get(user=people["bob"])
    _, prefix, secret = token.split("_", 2)
    assert row.prefix == prefix and row.name == "CI pipeline"
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    stored = [str(v) for v in ApiToken.objects.values().get()]
    stored += [str(e.data) for e in AuditEvent.objects.all()]
    assert not any(secret in value for value in stored)
    again = bob.get(reverse("tokens")).content.decode()
    assert token not in again and secret not in again
    assert f"acc_{prefix}_…" in again


def test_the_page_says_the_token_will_not_be_shown_again(login, people):
    response = login("bob").post(reverse("tokens"), {"token-name": "laptop", "token-expires_in": "30"})

    page = response.content.decode()
    assert "it will not be shown again" in page
    assert 'data-copy="#new-token-value"' in page and "frontend/copy.js" in page


def test_a_token_made_on_the_page_calls_the_api_as_its_owner(login, people):
    token = create_token(login("bob"))

    response = api_me(token)

    assert response.status_code == 200
    assert response.json()["username"] == "bob"


def test_a_revoked_token_is_refused_by_the_api(login, people):
    bob = login("bob")
    token = create_token(bob)
    assert api_me(token).status_code == 200

    response = bob.post(reverse("token_revoke", args=[ApiToken.objects.get(user=people["bob"]).pk]))

    assert response.status_code == 302 and response.url == reverse("tokens")
    assert api_me(token).status_code == 401
    assert "revoked" in bob.get(reverse("tokens")).content.decode()


def test_a_token_that_never_expires_says_so(login, people):
    bob = login("bob")
    create_token(bob, expires_in="never")

    assert ApiToken.objects.get(user=people["bob"]).expires_at is None
    assert "never" in bob.get(reverse("tokens")).content.decode()


def test_a_token_needs_a_name(login, people):
    response = login("bob").post(reverse("tokens"), {"token-name": "", "token-expires_in": "90"})

    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_an_expiry_off_the_list_is_refused(login, people):
    response = login("bob").post(reverse("tokens"), {"token-name": "x", "token-expires_in": "99999"})

    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_someone_without_tokens_is_told_how_to_use_one(login, people):
    page = login("alice").get(reverse("tokens")).content.decode()

    assert "No tokens yet" in page
    assert 'curl -H "Authorization: Bearer acc_…" http://testserver/api/v1/me' in page


def test_alice_cannot_revoke_bobs_token(login, people):
    create_token(login("bob"))
    token = ApiToken.objects.get(user=people["bob"])

    response = login("alice").post(reverse("token_revoke", args=[token.pk]))

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_nav_links_the_tokens_webhooks_and_api_docs(login, people):
    page = login("alice").get(reverse("dashboard")).content.decode()

    assert f'href="{reverse("tokens")}"' in page and f'href="{reverse("webhooks")}"' in page
    assert 'href="/api/v1/docs"' in page


# --- service accounts ---------------------------------------------------------------------------------

def test_a_contributor_cannot_create_a_service_account(login, people):
    response = create_service_account(login("alice"), people["legal"])

    assert response.status_code == 403
    assert "Skill owner role" in response.content.decode()
    assert not ServiceAccount.objects.exists()


def test_a_contributor_sees_no_service_account_forms(login, people):
    page = login("alice").get(reverse("tokens")).content.decode()

    assert reverse("service_account_new", args=[people["legal"].pk]) not in page
    assert "Skill owners manage their team's service accounts" in page


def test_a_skill_owner_creates_a_service_account(login, people):
    bob = login("bob")

    response = create_service_account(bob, people["legal"], name="CI pipeline", role="contributor")

    assert response.status_code == 302
    account = ServiceAccount.objects.get()
    assert account.team == people["legal"] and account.name == "ci-pipeline"
    assert account.user.memberships.get().role == "contributor"
    page = bob.get(reverse("tokens")).content.decode()
    assert "ci-pipeline" in page and "Contributor" in page


def test_a_skill_owner_cannot_give_a_service_account_a_role_above_their_own(login, people):
    bob = login("bob")
    form = bob.get(reverse("tokens")).content.decode()
    assert 'value="skill_owner"' in form and 'value="platform_admin"' not in form

    response = create_service_account(bob, people["legal"], role="platform_admin")

    assert response.status_code == 400
    assert "A service account holds one team role" in response.content.decode()
    assert not ServiceAccount.objects.exists()


def test_carol_cannot_create_a_service_account_in_legal(login, people):
    response = create_service_account(login("carol"), people["legal"])

    assert response.status_code == 404
    assert not ServiceAccount.objects.exists()


def test_a_skill_owner_sees_only_their_own_teams_service_accounts(login, people):
    create_service_account(login("carol"), people["hr"], name="hr-bot")

    page = login("bob").get(reverse("tokens")).content.decode()

    assert "hr-bot" not in page
    assert "Service accounts · Legal" in page and "Service accounts · HR" not in page


def test_a_service_account_token_is_shown_once(login, people):
    bob = login("bob")
    create_service_account(bob, people["legal"])
    account = ServiceAccount.objects.get()

    token = issue_token(bob, account)

    assert ApiToken.objects.get().user == account.user
    page = bob.get(reverse("tokens")).content.decode()
    assert token not in page and ApiToken.objects.get().shown in page
    assert api_me(token).json()["service_account"] is True


@pytest.mark.parametrize(("role", "expected"), [("viewer", 403), ("skill_owner", 201)])
def test_a_service_account_token_acts_with_its_role(login, people, role, expected):
    bob = login("bob")
    create_service_account(bob, people["legal"], name=f"bot-{role}", role=role)
    token = issue_token(bob, ServiceAccount.objects.get())

    response = Client().post("/api/v1/skills", {"team": "legal", "slug": "contract-terms", "name": "Contract terms"},
                             content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == expected, response.content


def test_a_contributor_cannot_issue_a_token_for_a_service_account(login, people):
    create_service_account(login("bob"), people["legal"])
    account = ServiceAccount.objects.get()

    response = login("alice").post(reverse("service_account_token", args=[account.pk]),
                                   {f"account-{account.pk}-name": "mine", f"account-{account.pk}-expires_in": "30"})

    assert response.status_code == 403
    assert not ApiToken.objects.exists()


def test_a_service_account_token_is_revoked_by_a_skill_owner(login, people):
    bob = login("bob")
    create_service_account(bob, people["legal"])
    token = issue_token(bob, ServiceAccount.objects.get())

    response = login("dave").post(reverse("token_revoke", args=[ApiToken.objects.get().pk]))

    assert response.status_code == 302
    assert api_me(token).status_code == 401


def test_a_contributor_cannot_revoke_a_service_account_token(login, people):
    bob = login("bob")
    create_service_account(bob, people["legal"])
    token = issue_token(bob, ServiceAccount.objects.get())

    response = login("alice").post(reverse("token_revoke", args=[ApiToken.objects.get().pk]))

    assert response.status_code == 403
    assert api_me(token).status_code == 200


def test_disabling_a_service_account_stops_its_tokens(login, people):
    bob = login("bob")
    create_service_account(bob, people["legal"])
    account = ServiceAccount.objects.get()
    token = issue_token(bob, account)

    response = bob.post(reverse("service_account_disable", args=[account.pk]))

    assert response.status_code == 302
    assert api_me(token).status_code == 401
    page = bob.get(reverse("tokens")).content.decode()
    assert "disabled" in page
    assert reverse("service_account_token", args=[account.pk]) not in page


def test_a_contributor_cannot_disable_a_service_account(login, people):
    create_service_account(login("bob"), people["legal"])
    account = ServiceAccount.objects.get()

    response = login("alice").post(reverse("service_account_disable", args=[account.pk]))

    assert response.status_code == 403
    account.refresh_from_db()
    assert account.is_active


def test_a_platform_admin_manages_every_teams_service_accounts(login, people):
    page = login("admin").get(reverse("tokens")).content.decode()

    assert "Service accounts · Legal" in page and "Service accounts · HR" in page


def test_someone_in_no_team_still_gets_personal_tokens(login, people, django_user_model):
    people["nora"] = django_user_model.objects.create_user(username="nora", password="pw-nora")
    nora = login("nora")
    assert "you are in no team yet" in nora.get(reverse("tokens")).content.decode()

    token = create_token(nora)

    me = api_me(token).json()
    assert me["username"] == "nora" and me["teams"] == []
