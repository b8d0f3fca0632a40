"""Forms and actions: creating skills, starting and cancelling training, approving and rejecting."""

from django.urls import reverse

from audit.models import AuditEvent
from registry.models import Approval, ModelVersion, PromotionRequest
from skills.models import Skill
from training.models import TrainingJob


def skill_form(**overrides):
    data = {"slug": "contract-terms", "name": "Contract terms", "description": "", "scorer": "exact",
            "scorer_options": "", "teacher_style": "inline", "tolerance": "0", "min_gain": "0.1",
            "max_new_tokens": "64"}
    return {**data, **overrides}


def test_a_skill_owner_creates_a_skill_in_the_current_team(login, people):
    response = login("bob").post(reverse("skill_new"), skill_form())

    skill = Skill.objects.get(slug="contract-terms")
    assert response.status_code == 302 and response.url == reverse("skill_detail", args=[skill.pk])
    assert skill.team == people["legal"] and skill.min_gain == 0.1


def test_the_skill_form_lists_every_scorer_kind(login, people):
    from workers.engine.contract.scoring import SCORER_KINDS

    page = login("bob").get(reverse("skill_new")).content.decode()

    for kind, _ in SCORER_KINDS:
        assert f'value="{kind}"' in page


def test_scorer_options_must_be_a_json_object(login, people):
    response = login("bob").post(reverse("skill_new"), skill_form(scorer_options="{not json"))

    assert response.status_code == 400
    assert "Not valid JSON" in response.content.decode()
    assert not Skill.objects.filter(slug="contract-terms").exists()


def test_the_scorer_refuses_an_unknown_option(login, people):
    response = login("bob").post(reverse("skill_new"), skill_form(scorer_options='{"threshold": 0.5}'))

    assert response.status_code == 400
    assert "unknown option" in response.content.decode()


def test_a_taken_slug_is_reported_on_the_form(login, skill):
    response = login("bob").post(reverse("skill_new"), skill_form(slug=skill.slug))

    assert response.status_code == 400
    assert "already exists" in response.content.decode()


def test_a_contributor_cannot_create_skills(login, people):
    response = login("alice").get(reverse("skill_new"))

    assert response.status_code == 403
    assert "Skill owner role" in response.content.decode()


def test_training_sends_only_the_hyperparameters_the_user_set(login, skill, base_version):
    response = login("alice").post(reverse("job_start", args=[skill.pk]), {
        "method": "sft", "demonstration_set": skill.demonstration_sets.first().pk, "max_steps": "7",
        "learning_rate": ""})

    job = TrainingJob.objects.get()
    assert response.status_code == 302 and response.url == reverse("job_detail", args=[job.pk])
    assert job.method == "sft" and job.config["max_steps"] == 7 and job.status == "queued"


def test_an_out_of_range_hyperparameter_is_shown_on_the_form(login, skill, base_version):
    response = login("alice").post(reverse("job_start", args=[skill.pk]), {
        "method": "sdft", "demonstration_set": skill.demonstration_sets.first().pk, "learning_rate": "0.5"})

    assert response.status_code == 400
    assert "learning_rate" in response.content.decode()
    assert not TrainingJob.objects.exists()


def test_training_without_a_production_model_is_refused(login, skill):
    response = login("alice").post(reverse("job_start", args=[skill.pk]), {
        "method": "sdft", "demonstration_set": skill.demonstration_sets.first().pk})

    assert response.status_code == 409
    assert "no production model" in response.content.decode()


def test_another_teams_demonstration_set_is_refused(login, skill, hr_skill, base_version):
    response = login("alice").post(reverse("job_start", args=[skill.pk]), {
        "method": "sdft", "demonstration_set": hr_skill.demonstration_sets.first().pk})

    assert response.status_code == 400
    assert not TrainingJob.objects.exists()


def test_cancelling_a_finished_job_is_refused(login, skill):
    job = TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.first(),
                                     status="succeeded")

    response = login("alice").post(reverse("job_cancel", args=[job.pk]))

    assert response.status_code == 409
    assert "nothing to cancel" in response.content.decode()


def test_bob_approves_daves_request_and_production_moves(login, skill, open_request):
    request = open_request(skill)

    response = login("bob").post(reverse("approval_decide", args=[request.pk]),
                                 {"decision": "approve", "comment": "scores look right"})

    assert response.status_code == 302
    assert ModelVersion.objects.get(status="production").pk == request.version_id
    dashboard = login("vera").get(reverse("dashboard")).content.decode()
    assert request.version.label in dashboard and "bob" in dashboard


def test_self_approval_is_refused_with_the_four_eyes_message(login, skill, open_request, people):
    request = open_request(skill, by=people["bob"])

    response = login("bob").post(reverse("approval_decide", args=[request.pk]), {"decision": "approve"})

    assert response.status_code == 403
    assert "four-eyes" in response.content.decode()
    assert ModelVersion.objects.get(pk=request.version_id).status == "awaiting_approval"
    assert not Approval.objects.exists()


def test_a_blocked_candidate_cannot_be_approved(login, skill, make_candidate, people):
    version = make_candidate(skill, status="blocked")
    # A request left open from before the version was blocked; the service must still refuse.
    request = PromotionRequest.objects.create(version=version, requested_by=people["dave"])
    events_before = AuditEvent.objects.count()

    page = login("bob").get(reverse("version_detail", args=[version.pk])).content.decode()
    response = login("bob").post(reverse("approval_decide", args=[request.pk]), {"decision": "approve"})

    assert "Approve and promote" not in page
    assert response.status_code == 409
    assert "blocked" in response.content.decode()
    version.refresh_from_db()
    assert version.status == "blocked" and not Approval.objects.exists()
    assert AuditEvent.objects.count() == events_before


def test_the_inbox_shows_no_approve_button_for_a_blocked_candidate(login, skill, make_candidate, people):
    version = make_candidate(skill, status="blocked")
    PromotionRequest.objects.create(version=version, requested_by=people["dave"])

    page = login("bob").get(reverse("approvals")).content.decode()

    assert version.label in page and "Approve and promote" not in page


def test_rejecting_keeps_production(login, skill, open_request, base_version):
    request = open_request(skill)

    login("bob").post(reverse("approval_decide", args=[request.pk]), {"decision": "reject", "comment": "no"})

    assert ModelVersion.objects.get(status="production") == base_version
    assert ModelVersion.objects.get(pk=request.version_id).status == "rejected"


def test_a_contributor_requests_promotion_of_a_gated_candidate(login, skill, make_candidate):
    version = make_candidate(skill)

    response = login("alice").post(reverse("version_request_promotion", args=[version.pk]), {"comment": "ready"})

    assert response.status_code == 302
    assert PromotionRequest.objects.get(version=version).requested_by.username == "alice"
    inbox = login("bob").get(reverse("approvals")).content.decode()
    assert version.label in inbox and "Approve and promote" in inbox


def test_a_stale_candidate_is_retrained_on_the_new_production(login, skill, make_candidate, open_request):
    stale = make_candidate(skill)
    winner = open_request(skill)
    login("bob").post(reverse("approval_decide", args=[winner.pk]), {"decision": "approve"})
    stale.refresh_from_db()
    assert stale.status == "stale"
    assert "Retrain on the new production" in login("alice").get(
        reverse("version_detail", args=[stale.pk])).content.decode()

    response = login("alice").post(reverse("version_retrain", args=[stale.pk]))

    job = TrainingJob.objects.latest("pk")
    assert response.status_code == 302 and response.url == reverse("job_detail", args=[job.pk])
    assert job.skill == skill and job.status == "queued" and job.method == stale.training_job.method
