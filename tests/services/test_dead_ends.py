"""No dead ends: a failed gate can be re-run (service, page button, `manage.py gate --rerun`); the reaper
reclaims gates stuck evaluating and queued jobs whose message was lost (re-enqueued a bounded number of
times, then failed with the reason); an open promotion request is closed, with the reason shown, when its
version can no longer be promoted."""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from evaluation.services import eval_run_claim
from registry.errors import TransitionError
from registry.models import ModelVersion, PromotionRequest
from registry.services.approvals import approval_decide, promotion_request_create
from registry.services.gates import gate_evaluate, gate_fail, gate_reap_stuck, gate_rerun, gate_timeout_s
from teams.permissions import RoleRequired
from tests.fixtures.registry import gate_scores_record, promote, scores_grid
from training.models import JobEvent, TrainingJob
from training.services import job_reap_stale, job_request

MINUTE = timezone.timedelta(minutes=1)


@pytest.fixture
def failed(skill, make_candidate):
    """A candidate of policy-codes whose gate raised (its eval worker ran out of memory)."""
    version = make_candidate(skill, status="evaluating")
    assert gate_fail(version=version, error="RuntimeError: CUDA out of memory")
    return ModelVersion.objects.get(pk=version.pk)


# --- re-running a failed gate --------------------------------------------------------------------


def test_a_skill_owner_re_runs_a_failed_gate_and_it_is_queued_again(failed, people, fake_tasks,
                                                                   django_capture_on_commit_callbacks):
    # when bob, a skill owner of the team, re-runs it
    with django_capture_on_commit_callbacks(execute=True):
        version = gate_rerun(version=failed, actor=people["bob"])
    # then it is evaluating again, its last error cleared, and the gate task is queued for it
    version.refresh_from_db()
    assert (version.status, version.gate_error, version.gate_requeues) == ("evaluating", "", 0)
    assert fake_tasks.calls == [("gate_candidate", (version.pk,), {})]
    event = AuditEvent.objects.get(action="version.evaluating", object_id=str(version.pk), data__rerun=True)
    assert event.actor == people["bob"]
    # and when the worker has the scores, the gate decides as for any candidate
    gate_scores_record(version, learned=True)
    assert gate_evaluate(candidate=version).verdict == "pass"
    assert ModelVersion.objects.get(pk=version.pk).status == "awaiting_approval"


@pytest.mark.parametrize("name", ["alice", "vera"])
def test_only_the_skills_owners_and_approvers_re_run_a_gate(failed, people, fake_tasks, name):
    with pytest.raises(RoleRequired, match="needs the Skill owner role"):
        gate_rerun(version=failed, actor=people[name])
    assert ModelVersion.objects.get(pk=failed.pk).status == "failed" and fake_tasks.calls == []


def test_a_failed_gate_whose_parent_left_production_is_marked_stale_not_re_run(failed, skill, make_candidate,
                                                                              people, fake_tasks):
    # given production moved while the gate lay failed
    promote(make_candidate(skill), requester=people["alice"], approver=people["bob"])
    # then the promotion already marked it stale (a failed candidate of the old production is one too)
    assert ModelVersion.objects.get(pk=failed.pk).status == "stale"
    with pytest.raises(TransitionError, match="only a version whose gate failed"):
        gate_rerun(version=failed, actor=people["bob"])
    assert fake_tasks.calls == []


def test_the_version_page_shows_why_the_gate_failed_and_the_re_run_button(failed, login, fake_tasks):
    url = reverse("version_detail", args=[failed.pk])
    # a skill owner sees the reason and the button; a contributor sees the reason and who can re-run it
    page = login("bob").get(url).content.decode()
    assert "The gate failed:" in page and "RuntimeError: CUDA out of memory" in page
    assert "Re-run gate</button>" in page
    other = login("alice").get(url).content.decode()
    assert "CUDA out of memory" in other and "Re-run gate</button>" not in other
    assert "A skill owner of Legal can re-run it." in other
    # when bob presses it
    response = login("bob").post(reverse("version_rerun_gate", args=[failed.pk]))
    # then
    assert response.status_code == 302 and response.url == url
    assert ModelVersion.objects.get(pk=failed.pk).status == "evaluating"


def test_manage_py_gate_rerun_runs_a_failed_gate_again(failed, people):
    # given the scores are in by now (the worker that failed had computed some, another finished them)
    gate_scores_record(failed, learned=True)
    out = io.StringIO()
    # when
    call_command("gate", f"v{failed.number}", "--rerun", stdout=out)
    # then the gate ran inline and passed; the job's requester's request is up
    failed.refresh_from_db()
    assert failed.status == "awaiting_approval" and out.getvalue().startswith(f"Gate for v{failed.number}")
    assert failed.promotion_requests.get().requested_by == people["alice"]
    # by the operator: no user account acted, and the log names the operator's login and host
    rerun = AuditEvent.objects.get(action="version.evaluating", data__rerun=True)
    assert rerun.actor is None and rerun.actor_label.startswith("operator ")
    assert rerun.actor_label.endswith("(manage.py gate)")


def test_manage_py_gate_on_a_failed_version_says_how_to_re_run_it(failed):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=f"CUDA out of memory. Run it again with `manage.py gate "
                                           f"v{failed.number} --rerun`"):
        call_command("gate", str(failed.number))


def test_a_gate_that_raises_fails_with_its_reason_and_can_be_re_run(skill, make_candidate, people, artifacts):
    import workers.pipeline as pipeline

    # given a candidate whose weights are not where its row says (nothing was written under ACCRETE_ARTIFACTS)
    version = make_candidate(skill, status="candidate")
    # when the worker gates it
    with pytest.raises(OSError):
        pipeline.run_candidate_gate(version.pk)
    # then it is failed, with the error kept, and not stuck evaluating
    version.refresh_from_db()
    assert version.status == "failed" and "ArtifactMissing" in version.gate_error
    assert "not in the artifact store" in version.gate_error
    assert AuditEvent.objects.get(action="version.failed", object_id=str(version.pk)).data["reason"].startswith(
        "ArtifactMissing")
    # and a skill owner can re-run it
    assert gate_rerun(version=version, actor=people["bob"], enqueue=False).status == "evaluating"


def test_a_gate_task_out_of_retries_fails_the_gate_with_the_reason(skill, make_candidate):
    from workers.tasks import gate_candidate

    # given the candidate's scores on policy-codes are being computed by a worker that never finishes
    version = make_candidate(skill, status="evaluating")
    scores_grid((skill,), {version.parent: (0,)})
    assert eval_run_claim(version=version, suite=skill.eval_suites.get()) is not None
    # when the gate task runs its last retry
    gate_candidate.apply(args=[version.pk], retries=gate_candidate.max_retries)
    # then the gate failed, saying why: not evaluating forever
    version.refresh_from_db()
    assert version.status == "failed"
    assert version.gate_error.startswith(f"Gave up after {gate_candidate.max_retries} retries: Scores missing for: "
                                         f"v{version.number} on policy-codes eval")


# --- the reaper: gates --------------------------------------------------------------------------------


def _started(version, ago):
    ModelVersion.objects.filter(pk=version.pk).update(gate_started_at=timezone.now() - ago)


def test_the_reaper_re_enqueues_a_gate_stuck_evaluating_then_fails_it(skill, make_candidate, settings, fake_tasks,
                                                                     django_capture_on_commit_callbacks):
    settings.ACCRETE_REQUEUE_MAX_ATTEMPTS = 2
    version = make_candidate(skill, status="evaluating")
    limit = timezone.timedelta(seconds=gate_timeout_s())
    # a gate still inside the eval time limit is left alone
    _started(version, limit - MINUTE)
    assert gate_reap_stuck() == []
    # past it, it is re-enqueued, once per stuck period, up to the limit
    for attempt in (1, 2):
        _started(version, limit + MINUTE)
        with django_capture_on_commit_callbacks(execute=True):
            assert gate_reap_stuck() == [(version.pk, "requeued")]
            assert gate_reap_stuck() == []  # the same pass twice (two beats at once) re-enqueues it once
        assert ModelVersion.objects.get(pk=version.pk).gate_requeues == attempt
    assert fake_tasks.calls == [("gate_candidate", (version.pk,), {})] * 2
    # then it fails with the reason, and a skill owner can re-run it
    _started(version, limit + MINUTE)
    assert gate_reap_stuck() == [(version.pk, "failed")]
    version.refresh_from_db()
    assert version.status == "failed"
    assert version.gate_error.startswith(f"The gate did not finish within {gate_timeout_s() // 60} minutes of its "
                                         "start, 3 time(s)")


def test_the_reaper_re_enqueues_a_candidate_whose_gate_never_started(skill, make_candidate, fake_tasks,
                                                                    django_capture_on_commit_callbacks):
    # given the gate message of a finished job was lost: the candidate was never gated
    version = make_candidate(skill, status="candidate")
    ModelVersion.objects.filter(pk=version.pk).update(
        created_at=timezone.now() - timezone.timedelta(seconds=gate_timeout_s()) - MINUTE)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        outcome = gate_reap_stuck()
    # then
    assert outcome == [(version.pk, "requeued")] and fake_tasks.calls == [("gate_candidate", (version.pk,), {})]
    assert AuditEvent.objects.filter(action="gate.requeued", object_id=str(version.pk)).exists()


# --- the reaper: jobs whose message was lost ----------------------------------------------------------


@pytest.fixture
def queued(skill, people, base_version, fake_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = job_request(skill=skill, demonstration_set=skill.demonstration_sets.get(), method="sdft", config={},
                          actor=people["alice"])
    fake_tasks.calls.clear()
    return job


def _queued_for(job, seconds):
    TrainingJob.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timezone.timedelta(seconds=seconds))


def test_a_queued_job_whose_message_was_lost_is_sent_again_then_failed(queued, settings, fake_tasks,
                                                                      django_capture_on_commit_callbacks):
    settings.ACCRETE_REQUEUE_MAX_ATTEMPTS = 2
    settings.ACCRETE_QUEUED_TIMEOUT_S = 600
    # not yet
    _queued_for(queued, 590)
    assert job_reap_stale() == []
    # queued past the timeout while no job runs: sent again (idempotent: job_start claims it once)
    for attempt in (1, 2):
        _queued_for(queued, 610)
        with django_capture_on_commit_callbacks(execute=True):
            assert job_reap_stale() == [(queued.pk, "queued")]
        queued.refresh_from_db()
        assert (queued.status, queued.reenqueues) == ("queued", attempt)
    assert fake_tasks.calls == [("train_job", (queued.pk,), {})] * 2
    assert JobEvent.objects.filter(job=queued, kind="reenqueued").count() == 2
    # then failed, saying why
    _queued_for(queued, 610)
    assert job_reap_stale() == [(queued.pk, "failed")]
    queued.refresh_from_db()
    assert queued.status == "failed"
    assert queued.error.startswith("No training worker took the job in 10 minutes, 3 time(s) while the workers "
                                   "were idle")


def test_a_queued_job_waiting_behind_a_running_one_is_left_alone(queued, skill, settings):
    settings.ACCRETE_QUEUED_TIMEOUT_S = 600
    TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.get(), status="running",
                               heartbeat_at=timezone.now())
    _queued_for(queued, 6000)
    assert job_reap_stale() == []
    assert TrainingJob.objects.get(pk=queued.pk).reenqueues == 0


def test_the_beat_task_reaps_jobs_and_gates(queued, skill, make_candidate, settings, fake_tasks,
                                           django_capture_on_commit_callbacks):
    from workers.tasks import reap_stale_jobs

    settings.ACCRETE_QUEUED_TIMEOUT_S = 600
    _queued_for(queued, 610)
    version = make_candidate(skill, status="evaluating")
    _started(version, timezone.timedelta(seconds=gate_timeout_s()) + MINUTE)
    # when the beat fires
    with django_capture_on_commit_callbacks(execute=True):
        outcome = reap_stale_jobs.apply().get()
    # then
    assert outcome == {"jobs": [(queued.pk, "queued")], "gates": [(version.pk, "requeued")]}
    assert sorted(fake_tasks.calls) == [("gate_candidate", (version.pk,), {}), ("train_job", (queued.pk,), {})]


def test_the_beat_schedule_runs_the_reaper_every_minute():
    from config.celery_app import app

    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "workers.tasks.reap_stale_jobs")
    assert entry["schedule"] == 60.0


# --- open requests are closed, with the reason ------------------------------------------------------


def test_an_open_request_is_closed_with_the_reason_when_production_moves(skill, make_candidate, people, login):
    # given dave asked for the promotion of v2, and bob approves a sibling first
    stale = make_candidate(skill)
    request = promotion_request_create(version=stale, actor=people["dave"])
    winner = make_candidate(skill)
    promote(winner, requester=people["alice"], approver=people["bob"])
    # then the request is closed with the reason, and out of every inbox
    request.refresh_from_db()
    reason = (f"v{stale.number} was trained from v{stale.parent.number}, but production is now v{winner.number}: "
              "retrain it on the new production version.")
    assert (request.status, request.closed_reason) == ("closed", reason)
    assert AuditEvent.objects.get(action="promotion.closed", object_id=str(request.pk)).data["reason"] == reason
    assert stale.label not in login("bob").get(reverse("approvals")).content.decode()
    # and the version page says why
    page = login("alice").get(reverse("version_detail", args=[stale.pk])).content.decode()
    assert "<strong>Closed</strong>: " + reason.replace("'", "&#x27;") in page
    # and approving it now says it was closed, and why
    with pytest.raises(TransitionError, match="This request was already closed: v"):
        approval_decide(request=request, approver=people["bob"], decision="approve")


def test_approving_a_stale_candidate_closes_its_request(skill, make_candidate, people, base_version):
    # given two requests from v1; production moves under the first (the sibling marking is undone here to
    # reach the approval's own check, as a race between the two would)
    first = make_candidate(skill)
    request = promotion_request_create(version=first, actor=people["alice"])
    second = make_candidate(skill)
    promote(second, requester=people["alice"], approver=people["dave"])
    ModelVersion.objects.filter(pk=first.pk).update(status="awaiting_approval")
    PromotionRequest.objects.filter(pk=request.pk).update(status="open", closed_reason="")
    # when bob approves it
    with pytest.raises(TransitionError, match="It is stale now; its promotion request is closed."):
        approval_decide(request=request, approver=people["bob"], decision="approve")
    # then the stale mark and the closed request are kept
    assert ModelVersion.objects.get(pk=first.pk).status == "stale"
    assert PromotionRequest.objects.get(pk=request.pk).status == "closed"


def test_a_request_left_open_on_a_version_the_gate_blocks_is_closed(skill, make_candidate, people):
    # given a request row from before the gate decided (an older release wrote them early)
    version = make_candidate(skill, status="evaluating")
    request = PromotionRequest.objects.create(version=version, requested_by=people["alice"])
    gate_scores_record(version, learned=False)
    # when the gate blocks it
    assert gate_evaluate(candidate=version).verdict == "block"
    # then
    request.refresh_from_db()
    assert request.status == "closed"
    assert request.closed_reason.startswith("the gate blocked it: policy-codes (the skill being added) did not "
                                            "improve enough")


def test_rejecting_decides_the_request_and_the_history_says_rejected(skill, make_candidate, people, login):
    version = make_candidate(skill)
    request = promotion_request_create(version=version, actor=people["alice"])
    approval_decide(request=request, approver=people["bob"], decision="reject", comment="not now")
    request.refresh_from_db()
    assert request.status == "rejected" and request.decided_at is not None
    assert AuditEvent.objects.filter(action="promotion.rejected", object_id=str(request.pk)).exists()
    page = login("alice").get(reverse("version_detail", args=[version.pk])).content.decode()
    assert "<strong>Rejected</strong> by bob" in page and "Rejectd" not in page
