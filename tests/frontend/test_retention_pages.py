"""Retention in the browser: a blocked candidate's remedy and its "Retrain with retention" form, how a job
anchored, the gate's intervals and the lineage budget in the gate report and the matrix."""

import json

import pytest
from django.urls import reverse

from evaluation.models import EvalRun
from registry.models import GateResult
from skills.models import EvalSuite
from tests.fixtures.skills import skill_with_cases
from training.models import TrainingJob
from workers.engine.contract.config import TrainConfig

POOL = "ab12cd34ef56" + "0" * 52


@pytest.fixture
def blocked(skill, people, make_candidate, base_version):
    """policy-codes' candidate, blocked: ticket-routing (in production) lost 30 points and the probes 40. Its
    SDFT job anchored at the default ratio."""
    routing = skill_with_cases(people["legal"], slug="ticket-routing", name="Ticket routing", cases=20)
    version = make_candidate(skill, status="blocked")
    job = version.training_job
    job.config = TrainConfig(method="sdft", learning_rate=1e-3, max_steps=32, lora_r=8, num_loss_tokens_to_skip=0,
                             anchor_pool_sha256=POOL).to_dict()
    job.save()
    base_lineage = {"version": base_version.number, "kind": "base", "score": 1.0, "after": 0.6, "delta": -0.4,
                    "budget": 0.3, "left": -0.1, "verdict": "block"}
    # the real gate blocked it (its skill did not improve); its report is replaced by one that names probes
    # and an earlier skill, each with its interval and lineage reference
    GateResult.objects.filter(candidate=version).update(verdict="block", rows=[
        {"suite": EvalSuite.objects.get(skill=skill).pk, "name": "policy-codes", "kind": "skill", "before": 0.0,
         "after": 0.7, "delta": 0.7, "tolerance": 0.0, "min_gain": 0.2, "target": True, "verdict": "pass",
         "passed_before": 0, "passed_after": 14, "total": 20, "n": 20, "interval": [0.48, 0.92], "warning": None,
         "lineage": None},
        {"suite": EvalSuite.objects.get(skill=routing).pk, "name": "ticket-routing", "kind": "skill", "before": 1.0,
         "after": 0.7, "delta": -0.3, "tolerance": 0.1, "target": False, "verdict": "block", "passed_before": 20,
         "passed_after": 14, "total": 20, "n": 20, "interval": [-0.52, -0.08], "warning": None,
         "lineage": {**base_lineage, "kind": "best", "after": 0.7, "delta": -0.3, "budget": 0.2}},
        {"suite": 999, "name": "retention probes", "kind": "probes", "before": 1.0, "after": 0.6, "delta": -0.4,
         "tolerance": 0.2, "target": False, "verdict": "block", "passed_before": 10, "passed_after": 6, "total": 10,
         "n": 10, "interval": [-0.77, -0.03],
         "warning": "10 cases cannot resolve a 20-point tolerance: one flipped case is a 10-point swing; add eval "
                    "cases (≥ 10)", "lineage": base_lineage},
    ], reasons=["ticket-routing dropped from 100% to 70% (tolerance 10%)",
                "retention probes dropped from 100% to 60% (tolerance 20%)"])
    return version


def test_the_gate_report_says_which_remedy_it_suggests_and_why(login, blocked):
    page = login("alice").get(reverse("version_detail", args=[blocked.pk])).content.decode()

    assert ("Suggested remedy:</strong> Retrain with more retention anchoring (anchor_ratio 1 → 2); "
            "rehearse ticket-routing (rehearsal=demonstration).") in page
    assert "retention probes dropped 40 points (tolerance 20%): the update moved the model" in page
    assert "Retrain with retention</button>" in page
    # and the rows show their intervals, the lineage reference and the small-suite warning
    assert "95% CI -52 pts to -8 pts · n 20" in page
    assert f"vs base v{blocked.parent.number} (100%) · budget 30%" in page
    assert "10 cases cannot resolve a 20-point tolerance" in page


def test_a_viewer_sees_the_remedy_but_no_retrain_button(login, blocked):
    page = login("vera").get(reverse("version_detail", args=[blocked.pk])).content.decode()

    assert "Suggested remedy:" in page and "Retrain with retention</button>" not in page


def test_retrain_with_retention_opens_the_training_form_pre_filled(login, blocked):
    # when alice, a contributor of the skill's team, asks to retrain the blocked candidate
    response = login("alice").post(reverse("version_retrain", args=[blocked.pk]))
    # then she gets the training form, pre-filled from the job with the remedy, and nothing is queued yet
    assert response.status_code == 200
    initial = dict(response.context["form"].initial)
    carried = json.loads(initial.pop("carried"))
    assert carried["num_loss_tokens_to_skip"] == 0 and "anchor_pool_sha256" not in carried
    assert initial == {
        "method": "sdft", "demonstration_set": blocked.training_job.demonstration_set_id,
        "learning_rate": 1e-3, "num_epochs": 1.0, "max_steps": 32, "batch_size": 4, "lora_r": 8,
        "anchor_ratio": 2.0, "anchor_teacher": "ema", "rehearsal": "demonstration",
        "rehearsal_skills": "ticket-routing",
    }
    page = response.content.decode()
    assert f'action="{reverse("job_start", args=[blocked.skill.pk])}"' in page
    assert "Retrain v" in page and "with retention." in page
    assert TrainingJob.objects.count() == 1


def test_submitting_the_pre_filled_form_queues_an_anchored_job(login, blocked, fake_tasks,
                                                               django_capture_on_commit_callbacks):
    alice = login("alice")
    initial = alice.post(reverse("version_retrain", args=[blocked.pk])).context["form"].initial
    # when she submits it as it is
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(reverse("job_start", args=[blocked.skill.pk]), initial)
    # then a new SDFT job is queued with the job's hyperparameters and the remedy's retention settings
    job = TrainingJob.objects.latest("pk")
    assert response.status_code == 302 and response.url == reverse("job_detail", args=[job.pk])
    assert job.method == "sdft" and job.skill == blocked.skill and job.status == "queued"
    assert job.demonstration_set == blocked.training_job.demonstration_set
    assert {k: job.config[k] for k in ("anchor_ratio", "anchor_teacher", "rehearsal", "rehearsal_skills",
                                       "max_steps", "learning_rate")} == {
        "anchor_ratio": 2.0, "anchor_teacher": "ema", "rehearsal": "demonstration",
        "rehearsal_skills": ["ticket-routing"], "max_steps": 32, "learning_rate": 1e-3}
    # and every other setting of the blocked job is carried over, not reset to the engine's defaults
    assert job.config["num_loss_tokens_to_skip"] == 0
    assert fake_tasks.calls == [("train_job", (job.pk,), {})]


def test_a_viewer_cannot_retrain(login, blocked):
    response = login("vera").post(reverse("version_retrain", args=[blocked.pk]))

    assert response.status_code == 403
    assert "Contributor role" in response.content.decode()
    assert TrainingJob.objects.count() == 1


def test_an_unknown_skill_to_rehearse_is_named_on_the_form(login, skill, base_version):
    response = login("alice").post(reverse("job_start", args=[skill.pk]), {
        "method": "sdft", "demonstration_set": skill.demonstration_sets.first().pk,
        "rehearsal_skills": "policy-codes, no-such-skill"})

    assert response.status_code == 400
    assert "No skill &#x27;no-such-skill&#x27;" in response.content.decode()
    assert not TrainingJob.objects.exists()


@pytest.mark.parametrize("carried", ["[" * 5000, '{"seed": ' + "9" * 5000 + "}", '{"seed": NaN}', "[]",
                                     "x" * 30_000], ids=["deep", "digits", "NaN", "not an object", "too long"])
def test_hostile_carried_settings_are_refused_on_the_form(login, skill, base_version, carried):
    response = login("alice").post(reverse("job_start", args=[skill.pk]), {
        "method": "sdft", "demonstration_set": skill.demonstration_sets.first().pk, "carried": carried})

    assert response.status_code == 400
    assert not TrainingJob.objects.exists()


def test_the_job_page_says_how_the_job_anchored(login, blocked, skill):
    job = blocked.training_job
    job.config = {**job.config, "anchor_ratio": 2.0, "rehearsal": "demonstration",
                  "rehearsal_skills": ["ticket-routing"]}
    job.save()
    pure = TrainingJob.objects.create(skill=skill, demonstration_set=job.demonstration_set, status="queued",
                                      config=TrainConfig(method="sdft", anchor_ratio=0.0).to_dict())

    anchored_page = login("vera").get(reverse("job_detail", args=[job.pk])).content.decode()
    pure_page = login("vera").get(reverse("job_detail", args=[pure.pk])).content.decode()

    assert "<strong>Anchored</strong>: anchor ratio 2 — 8 anchor rows per step, pulled toward the EMA teacher" \
        in anchored_page
    assert f"anchor pool <code title=\"sha256 of the shipped anchor pool\">{POOL[:12]}</code>" in anchored_page
    assert "Rehearsal: demonstration (earlier skills' training rows as SDFT rows with their demonstrations) " \
           "of ticket-routing." in anchored_page
    assert "paper-pure SDFT (no anchoring)" in pure_page and "Anchored" not in pure_page


def test_the_matrix_shows_the_lineage_budget_the_gate_applied(login, blocked, base_version):
    suite = EvalSuite.objects.get(skill__slug="ticket-routing")
    for version, passed in ((base_version, 20), (blocked, 14)):
        EvalRun.objects.update_or_create(version=version, suite=suite, defaults=dict(
            status="succeeded", score=passed / 20, passed=passed, total=20))

    page = login("vera").get(reverse("matrix")).content.decode()
    data = login("vera").get(reverse("matrix_json")).json()

    routing = next(i for i, c in enumerate(data["columns"]) if c["name"] == "ticket-routing")
    assert data["rows"][-1]["cells"][routing]["lineage"]["budget"] == 0.2
    assert "-30 pts vs v1 · <span class=\"delta-down\">over budget</span>" in page
