"""The role × action × team matrix, through the API: the same answers as the browser's (403 for a role too
low in one's own team, 404 for another team's object), for people and for team service accounts alike —
the API goes through the same services, so it cannot walk around a rule."""

import pytest

from tokens.services import service_account_create, token_create

ROLES = {"viewer": "vera", "contributor": "alice", "skill_owner": "bob", "platform_admin": "admin"}
RANK = ["viewer", "contributor", "skill_owner", "platform_admin"]

ALLOWED = {  # action -> (status when allowed, minimum role)
    "view_skill": (200, "viewer"),
    "list_jobs": (200, "viewer"),
    "upload": (200, "contributor"),
    "readiness_check": (202, "contributor"),
    "start_training": (201, "contributor"),
    "cancel_job": (200, "contributor"),
    "request_promotion": (201, "contributor"),
    "edit_skill": (200, "skill_owner"),
    "archive_skill": (200, "skill_owner"),
    "approve": (200, "skill_owner"),
    "add_webhook": (201, "skill_owner"),
    "list_service_accounts": (200, "viewer"),
    "download_demonstrations": (200, "viewer"),
    "view_audit": (200, "platform_admin"),
}
# a list answers 200 with only one's own teams' rows: "another team's" is an empty list, not a 404
LISTS = {"list_jobs"}


def expected(role: str, action: str, team: str, kind: str = "person") -> int:
    ok, minimum = ALLOWED[action]
    if kind == "service" and action == "approve" and team == "own" and role == "skill_owner":
        return 403  # four eyes are people's: a service account never approves, whatever its role
    if role == "platform_admin":
        return ok
    if action == "view_audit":  # not a team object: a role question only
        return 403
    if team == "other" and action not in LISTS:
        return 404
    return ok if RANK.index(role) >= RANK.index(minimum) else 403


@pytest.fixture
def act(api, people, skill, hr_skill, base_version, open_request, make_candidate, good_file, fake_tasks, var_dir):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from training.models import TrainingJob

    def run(client, action: str, team: str):
        target = skill if team == "own" else hr_skill
        dset = target.demonstration_sets.first()
        if action == "view_skill":
            return client.get(f"/skills/{target.slug}")
        if action == "list_jobs":
            TrainingJob.objects.create(skill=target, demonstration_set=dset, status="queued")
            response = client.get("/jobs", skill=target.slug)
            visible = response.status_code == 200 and response.json()["count"] == 1
            assert visible == (team == "own" or client.is_admin), response.content
            return response
        if action == "upload":
            return client.upload(f"/skills/{target.slug}/uploads",
                                 {"file": SimpleUploadedFile("codes.jsonl", good_file)})
        if action == "readiness_check":
            return client.post(f"/demonstration-sets/{dset.pk}/readiness")
        if action == "start_training":
            return client.post("/jobs", {"skill": target.slug, "method": "sdft"})
        if action == "cancel_job":
            job = TrainingJob.objects.create(skill=target, demonstration_set=dset, status="queued")
            return client.post(f"/jobs/{job.pk}/cancel")
        if action == "request_promotion":
            return client.post(f"/versions/{make_candidate(target).number}/promotion-requests", {"comment": "ok"})
        if action == "edit_skill":
            return client.patch(f"/skills/{target.slug}", {"tolerance": 0.0, "description": "tightened"})
        if action == "archive_skill":
            return client.post(f"/skills/{target.slug}/archive")
        if action == "approve":
            return client.post(f"/promotion-requests/{open_request(target).pk}/decision", {"decision": "approve"})
        if action == "add_webhook":
            return client.post("/webhooks", {"team": target.team.slug, "url": "https://ci.example/hook"})
        if action == "list_service_accounts":
            return client.get(f"/teams/{target.team.slug}/service-accounts")
        if action == "download_demonstrations":
            return client.get(f"/demonstration-sets/{dset.pk}/download")
        if action == "view_audit":
            return client.get("/audit")
        raise AssertionError(action)

    return run


@pytest.fixture
def identity(api, people):
    """identity(role, kind) → an ApiClient: a person of that role in Legal, or a Legal service account."""

    def make(role: str, kind: str):
        if kind == "person":
            client = api(ROLES[role])
        else:
            account = service_account_create(team=people["legal"], name=f"svc {role}", role=role,
                                             actor=people["admin"])
            client = type(api(None))(token_create(user=account.user, name="ci", actor=people["admin"]).secret)
        client.is_admin = role == "platform_admin"
        return client

    return make


@pytest.mark.parametrize("team", ["own", "other"])
@pytest.mark.parametrize("action", list(ALLOWED))
@pytest.mark.parametrize(("role", "kind"), [(r, "person") for r in ROLES]
                         + [(r, "service") for r in ("viewer", "contributor", "skill_owner")])
def test_api_permission_matrix(act, identity, role, kind, action, team):
    response = act(identity(role, kind), action, team)

    assert response.status_code == expected(role, action, team, kind), response.content.decode()[:400]
    if response.status_code >= 400:
        assert response["Content-Type"] == "application/problem+json"


def test_a_refusal_names_the_missing_role_and_changes_nothing(api, skill, base_version):
    from training.models import TrainingJob

    response = api("vera").post("/jobs", {"skill": skill.slug, "method": "sdft"})

    assert response.status_code == 403
    assert "needs the Contributor role" in response.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_another_teams_cases_are_not_readable_through_the_api(api, skill, hr_skill, make_candidate):
    version = make_candidate(hr_skill)
    alice = api("alice")

    assert alice.get(f"/versions/{version.number}").status_code == 404
    assert alice.get(f"/demonstration-sets/{hr_skill.demonstration_sets.first().pk}/download").status_code == 404
    assert api("carol").get(f"/versions/{version.number}").status_code == 200


def test_a_person_in_no_team_sees_no_versions(api, people, django_user_model, base_version):
    from tokens.services import token_create

    loner = django_user_model.objects.create_user(username="loner", password="x")
    client = type(api(None))(token_create(user=loner, name="t", actor=loner).secret)

    assert client.get("/versions").json()["count"] == 0
    assert client.get(f"/versions/{base_version.number}").status_code == 403
    assert client.get("/skills").json()["count"] == 0


def test_a_service_account_cannot_be_the_second_pair_of_eyes(api, people, skill, make_candidate, open_request):
    """bob cannot ask with his machine and approve himself, nor approve with a machine: four eyes are people."""
    from registry.models import ModelVersion

    svc = service_account_create(team=people["legal"], name="bob bot", role="skill_owner", actor=people["bob"])
    machine = type(api(None))(token_create(user=svc.user, name="ci", actor=people["bob"]).secret)
    version = make_candidate(skill)
    asked = machine.post(f"/versions/{version.number}/promotion-requests", {"comment": "from CI"})
    assert asked.status_code == 201
    # bob made the machine that asked: his approval is his own request's
    refused = api("bob").post(f"/promotion-requests/{asked.json()['id']}/decision", {"decision": "approve"})
    assert refused.status_code == 403 and "four-eyes" in refused.json()["detail"]
    # a machine never approves
    request = open_request(skill, by=people["dave"])
    refused = machine.post(f"/promotion-requests/{request.pk}/decision", {"decision": "approve"})
    assert refused.status_code == 403 and "service account" in refused.json()["detail"]
    assert not ModelVersion.objects.filter(status="production", skill=skill).exists()
    # dave, a second person, can approve the machine's request
    decided = api("dave").post(f"/promotion-requests/{asked.json()['id']}/decision", {"decision": "approve"})
    assert decided.status_code == 200, decided.content
    assert ModelVersion.objects.get(status="production") == version


def test_a_skill_change_is_decided_by_another_person_through_the_api(api, people, skill):
    from skills.models import SkillChange

    svc = service_account_create(team=people["legal"], name="bob bot", role="skill_owner", actor=people["bob"])
    machine = type(api(None))(token_create(user=svc.user, name="ci", actor=people["bob"]).secret)
    asked = machine.patch(f"/skills/{skill.slug}", {"tolerance": 0.5, "comment": "looser"})
    assert asked.status_code == 200 and asked.json()["pending_change"], asked.content
    change = asked.json()["pending_change"]
    assert api("bob").post(f"/skill-changes/{change}/decision", {"decision": "approve"}).status_code == 403
    assert machine.post(f"/skill-changes/{change}/decision", {"decision": "approve"}).status_code == 403
    decided = api("dave").post(f"/skill-changes/{change}/decision", {"decision": "approve", "comment": "ok"})
    assert decided.status_code == 200 and decided.json()["status"] == "approved", decided.content
    skill.refresh_from_db()
    assert skill.tolerance == 0.5 and SkillChange.objects.get(pk=change).decided_by == people["dave"]
