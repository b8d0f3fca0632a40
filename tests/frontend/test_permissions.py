"""Who may do what: each role × each action × own team / another team.

Own team is Legal (vera viewer, alice contributor, bob skill owner); the other team is HR. Objects of a
team the user is not in answer 404; a role too low in the user's own team answers 403. The role is checked
by the service that acts; the view only turns its refusal into the page."""

import pytest
from django.urls import reverse

ROLES = {"viewer": "vera", "contributor": "alice", "skill_owner": "bob", "platform_admin": "admin"}

ALLOWED = {  # action -> (expected when allowed, minimum role)
    "view_skill": (200, "viewer"),
    "upload": (200, "contributor"),
    "readiness_check": (302, "contributor"),
    "start_training": (302, "contributor"),
    "request_promotion": (302, "contributor"),
    "cancel_job": (302, "contributor"),
    "approve": (302, "skill_owner"),
    "view_audit": (200, "platform_admin"),
}
RANK = ["viewer", "contributor", "skill_owner", "platform_admin"]


def expected(role: str, action: str, team: str) -> int:
    ok, minimum = ALLOWED[action]
    if role == "platform_admin":
        return ok
    if action == "view_audit":  # not a team object: a role question only
        return 403
    if team == "other":
        return 404
    return ok if RANK.index(role) >= RANK.index(minimum) else 403


@pytest.fixture
def act(login, skill, hr_skill, base_version, open_request, make_candidate, good_file, fake_tasks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from training.models import TrainingJob

    def run(username: str, action: str, team: str):
        target = skill if team == "own" else hr_skill
        client = login(username)
        if action == "view_skill":
            return client.get(reverse("skill_detail", args=[target.pk]))
        if action == "upload":
            return client.post(reverse("upload"), {
                "skill": target.pk, "file": SimpleUploadedFile("codes.jsonl", good_file)})
        if action == "readiness_check":
            return client.post(reverse("readiness_check", args=[target.demonstration_sets.first().pk]))
        if action == "request_promotion":
            return client.post(reverse("version_request_promotion", args=[make_candidate(target).pk]))
        if action == "start_training":
            return client.post(reverse("job_start", args=[target.pk]), {
                "method": "sdft", "demonstration_set": target.demonstration_sets.first().pk})
        if action == "cancel_job":
            job = TrainingJob.objects.create(skill=target, demonstration_set=target.demonstration_sets.first(),
                                             status="queued")
            return client.post(reverse("job_cancel", args=[job.pk]))
        if action == "approve":
            request = open_request(target)
            return client.post(reverse("approval_decide", args=[request.pk]), {"decision": "approve"})
        if action == "view_audit":
            return client.get(reverse("audit"))
        raise AssertionError(action)

    return run


@pytest.mark.parametrize("team", ["own", "other"])
@pytest.mark.parametrize("action", list(ALLOWED))
@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix(act, role, action, team):
    response = act(ROLES[role], action, team)

    assert response.status_code == expected(role, action, team), response.content.decode()[:400]


def test_a_viewer_is_told_which_role_is_missing(login, skill, base_version):
    response = login("vera").post(reverse("job_start", args=[skill.pk]), {"method": "sdft"})

    assert response.status_code == 403
    assert "Contributor role" in response.content.decode()


def test_a_refused_action_changes_nothing(login, skill, base_version):
    from training.models import TrainingJob

    login("vera").post(reverse("job_start", args=[skill.pk]),
                       {"method": "sdft", "demonstration_set": skill.demonstration_sets.first().pk})

    assert not TrainingJob.objects.exists()


def test_every_page_needs_sign_in(client, skill):
    for url in [reverse("dashboard"), reverse("skills"), reverse("skill_detail", args=[skill.pk]),
                reverse("upload"), reverse("jobs"), reverse("versions"), reverse("matrix"),
                reverse("matrix_json"), reverse("approvals"), reverse("playground"), reverse("audit")]:
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login")), url


def test_base_versions_are_visible_to_every_team(login, base_version):
    assert login("carol").get(reverse("version_detail", args=[base_version.pk])).status_code == 200
    assert login("vera").get(reverse("version_detail", args=[base_version.pk])).status_code == 200


def test_another_teams_version_is_not_found(login, make_candidate, hr_skill):
    version = make_candidate(hr_skill)

    assert login("alice").get(reverse("version_detail", args=[version.pk])).status_code == 404
    assert login("carol").get(reverse("version_detail", args=[version.pk])).status_code == 200


def test_a_viewers_upload_is_refused_naming_the_role_and_not_kept(login, skill, good_file, var_dir):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = login("vera").post(reverse("upload"), {
        "skill": skill.pk, "file": SimpleUploadedFile("codes.jsonl", good_file)})

    assert response.status_code == 403
    assert "needs the Contributor role" in response.content.decode()
    assert list((var_dir / "uploads").iterdir()) == []


def test_a_contributor_demoted_before_confirming_saves_nothing(login, people, skill, good_file):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from skills.models import DemonstrationSet
    from teams.models import Membership, Role

    alice = login("alice")
    alice.post(reverse("upload"), {"skill": skill.pk, "file": SimpleUploadedFile("codes.jsonl", good_file)})
    Membership.objects.filter(user=people["alice"], team=people["legal"]).update(role=Role.VIEWER)

    response = alice.post(reverse("upload_confirm"), {"token": alice.session["pending_upload"]["token"]})

    assert response.status_code == 403 and "needs the Contributor role" in response.content.decode()
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1


def test_a_viewer_is_not_shown_the_retrain_form_of_a_blocked_candidate(login, skill, make_candidate):
    blocked = make_candidate(skill, status="blocked")

    response = login("vera").post(reverse("version_retrain", args=[blocked.pk]))

    assert response.status_code == 403 and "needs the Contributor role" in response.content.decode()


def test_only_a_platform_admin_grants_a_role_in_the_admin(login, people):
    from django.contrib.auth.models import Permission

    from teams.models import Membership

    bob = people["bob"]
    bob.is_staff = True
    bob.save()
    bob.user_permissions.add(*Permission.objects.filter(content_type__app_label="teams"))

    response = login("bob").post(reverse("admin:teams_membership_add"), {
        "user": bob.pk, "team": people["hr"].pk, "role": "platform_admin"})
    changelist = login("bob").get(reverse("admin:teams_membership_changelist")).content.decode()

    assert response.status_code == 403
    assert not Membership.objects.filter(user=bob, team=people["hr"]).exists()
    assert "carol" not in changelist and "vera" in changelist  # their own team's memberships only


def test_only_a_platform_admin_moves_a_skill_to_another_team_in_the_admin(login, people, skill):
    from django.contrib.auth.models import Permission

    bob = people["bob"]
    bob.is_staff = True
    bob.save()
    bob.user_permissions.add(*Permission.objects.filter(codename__in=["view_skill", "change_skill"]))

    login("bob").post(reverse("admin:skills_skill_change", args=[skill.pk]), {
        "team": people["hr"].pk, "slug": skill.slug, "name": "Renamed", "description": "",
        "teacher_style": "inline", "max_new_tokens": 64, "created_by": ""})

    skill.refresh_from_db()
    # the move is refused, and the admin edits none of the skill's settings (the skill page does, audited)
    assert skill.name != "Renamed" and skill.team == people["legal"]


def test_the_approval_history_says_who_rejected_it_in_plain_words(login, people, skill, open_request):
    request = open_request(skill)  # dave asked
    login("bob").post(reverse("approval_decide", args=[request.pk]), {"decision": "reject", "comment": "Not yet."})

    page = login("vera").get(reverse("version_detail", args=[request.version_id])).content.decode()

    assert "Rejected</strong> by bob" in page and "Rejectd" not in page
