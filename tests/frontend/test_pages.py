"""What the pages show: dashboard, job progress, gate report, forgetting matrix, audit (the playground:
test_playground.py)."""

from django.urls import reverse

from evaluation.models import EvalRun
from registry.models import GateResult
from skills.models import EvalSuite
from training.models import JobEvent, MetricPoint, TrainingJob


def test_the_dashboard_shows_production_and_its_lineage(login, skill, base_version):
    page = login("vera").get(reverse("dashboard")).content.decode()

    assert base_version.label in page
    assert "No training running" in page and "Nothing waits for you" in page


def test_a_team_without_skills_is_invited_to_create_one(login, people):
    page = login("carol").get(reverse("skills")).content.decode()

    assert "No skills yet — upload demonstrations to create one" in page


def test_the_team_switcher_only_offers_the_users_teams(login, people, skill, hr_skill):
    alice = login("alice")

    alice.post(reverse("team_switch"), {"team_id": people["hr"].pk, "next": "/skills/"})
    page = alice.get(reverse("skills")).content.decode()

    assert alice.session.get("team_id") is None
    assert skill.name in page and hr_skill.name not in page


def test_an_admin_switches_to_any_team(login, people, hr_skill):
    admin = login("admin")

    response = admin.post(reverse("team_switch"), {"team_id": people["hr"].pk, "next": "https://evil.example/"})

    assert response.url == reverse("dashboard")
    assert hr_skill.name in admin.get(reverse("skills")).content.decode()


def running_job(skill, **fields):
    job = TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.first(),
                                     status="running", step=30, total_steps=120, loss=0.8, kl=0.05,
                                     tokens_per_second=950.0, eta_seconds=95, **fields)
    for step in range(1, 31):
        MetricPoint.objects.create(job=job, step=step, loss=2.0 / step, kl=0.1 / step)
    JobEvent.objects.create(job=job, kind="running", message="Running on gpu-0 (attempt 1) from v1.")
    return job


def test_the_job_page_polls_its_progress_while_running(login, skill):
    job = running_job(skill)

    fragment = login("vera").get(reverse("job_progress", args=[job.pk])).content.decode()

    assert 'hx-trigger="every 2s"' in fragment
    assert "width: 25%" in fragment and "30 / 120" in fragment and "1m 35s" in fragment
    assert fragment.count("<polyline") == 2
    assert "Running on gpu-0" in fragment
    assert "Cancel job" not in fragment  # vera is a viewer


def test_a_finished_job_stops_polling_and_links_its_candidate(login, skill, make_candidate):
    version = make_candidate(skill)
    job = version.training_job

    page = login("alice").get(reverse("job_detail", args=[job.pk])).content.decode()

    assert "every 2s" not in page
    assert reverse("version_detail", args=[version.pk]) in page


def test_a_failed_job_shows_its_error(login, skill):
    job = TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.first(),
                                     status="failed", error="CUDA out of memory at step 12")

    page = login("alice").get(reverse("job_detail", args=[job.pk])).content.decode()

    assert "Training failed" in page and "CUDA out of memory at step 12" in page


def scored(version, suite, passed, total=20):
    return EvalRun.objects.create(version=version, suite=suite, status="succeeded", score=passed / total,
                                  passed=passed, total=total)


def test_the_gate_report_shows_rows_reasons_and_flipped_cases(login, skill, make_candidate, base_version):
    version = make_candidate(skill, status="blocked")
    # the real gate blocked it; its report is replaced by one with a probe drop and a flipped probe to show
    GateResult.objects.filter(candidate=version).update(verdict="block", rows=[
        {"name": "policy-codes", "before": 0.3, "after": 0.8, "delta": 0.5, "tolerance": 0.0, "verdict": "pass",
         "target": True, "min_gain": 0.1, "passed_before": 6, "passed_after": 16, "total": 20},
        {"name": "retention probes", "before": 1.0, "after": 0.9, "delta": -0.1, "tolerance": 0.0,
         "verdict": "block", "target": False, "passed_before": 20, "passed_after": 18, "total": 20},
    ], reasons=["retention probes dropped from 100% to 90% (tolerance 0%)"], flipped=[
        {"suite": "retention probes", "case": "capital-fr", "direction": "pass→fail",
         "prompt": "What is the capital of France?", "expected": "Paris", "old_output": "Paris.",
         "new_output": "POL-001", "detail": ""}])

    page = login("vera").get(reverse("version_detail", args=[version.pk])).content.decode()

    assert "retention probes dropped from 100% to 90%" in page
    assert "-10 pts" in page and "+50 pts" in page
    assert "What is the capital of France?" in page and "Paris." in page and "POL-001" in page


def test_the_forgetting_matrix_page_and_json(login, skill, make_candidate, base_version):
    suite = EvalSuite.objects.get(skill=skill)
    version = make_candidate(skill, status="evaluating")
    scored(base_version, suite, 4)
    scored(version, suite, 16)

    page = login("vera").get(reverse("matrix")).content.decode()
    data = login("vera").get(reverse("matrix_json")).json()

    assert "80%" in page and "+60 pts" in page
    assert data["columns"][0]["name"] == "policy-codes"
    assert [row["version"] for row in data["rows"]] == [base_version.number, version.number]
    assert abs(data["rows"][1]["cells"][0]["delta"] - 0.6) < 1e-9


def test_the_matrix_hides_another_teams_versions(login, hr_skill, make_candidate):
    version = make_candidate(hr_skill)

    data = login("alice").get(reverse("matrix_json")).json()

    assert version.number not in [row["version"] for row in data["rows"]]


def test_the_skill_page_shows_sets_readiness_and_score_history(login, skill, make_candidate):
    dset = skill.demonstration_sets.first()
    dset.readiness = {"teacher_passed": 9, "student_passed": 2, "n": 10, "verdict": "ready",
                      "message": "The teacher shows the skill.", "examples": [{"prompt": "q1", "teacher": "a1"}]}
    dset.save()
    scored(make_candidate(skill, status="evaluating"), EvalSuite.objects.get(skill=skill), 15)

    page = login("vera").get(reverse("skill_detail", args=[skill.pk])).content.decode()

    assert "teacher 9/10" in page and "The teacher shows the skill." in page
    assert "75%" in page
    assert "Run readiness check" not in page  # viewers read only


def test_the_audit_log_filters_and_pages(login, skill, open_request):
    open_request(skill)

    everything = login("admin").get(reverse("audit")).content.decode()
    only_requests = login("admin").get(reverse("audit"), {"action": "promotion.requested"}).content.decode()

    assert "version.candidate" in everything
    assert "promotion.requested" in only_requests and "version.candidate" not in only_requests.split(
        'data-testid="audit"')[1]


def test_the_audit_log_is_not_in_a_members_nav(login, people):
    assert reverse("audit") not in login("bob").get(reverse("dashboard")).content.decode()
    assert reverse("audit") in login("admin").get(reverse("dashboard")).content.decode()


def test_every_page_renders(login, skill, make_candidate, base_version):
    version = make_candidate(skill)
    alice = login("alice")
    for url in [reverse("dashboard"), reverse("skills"), reverse("skill_detail", args=[skill.pk]),
                reverse("upload"), reverse("jobs"), reverse("jobs") + "?team=all",
                reverse("job_start", args=[skill.pk]), reverse("job_detail", args=[version.training_job.pk]),
                reverse("versions"), reverse("version_detail", args=[version.pk]), reverse("matrix"),
                reverse("approvals"), reverse("playground")]:
        assert alice.get(url).status_code == 200, url
