"""The pipeline through real worker processes: Redis broker, PostgreSQL, the tiny model."""

import pytest
from django.utils import timezone

from registry.models import ModelVersion
from tests.fixtures.workers import FAST_SFT, wait_for
from training.models import JobEvent, TrainingJob
from training.services import job_cancel_request, job_reap_stale, job_request
from workers.pipeline import job_dirs

pytestmark = [pytest.mark.needs_services, pytest.mark.django_db(transaction=True)]


def _request(skill, people, **config):
    dset = skill.demonstration_sets.get()
    return job_request(skill=skill, demonstration_set=dset, method="sft", config={**FAST_SFT, **config},
                       actor=people["alice"])


def _job(job):
    job.refresh_from_db()
    return job


def test_a_skill_goes_from_upload_to_awaiting_approval(ok_skill, people, workers):
    # given a worker and a queued job
    workers.start()
    job = _request(ok_skill, people)
    # when the worker trains, evaluates and gates the candidate
    wait_for(lambda: _job(job).status in {"succeeded", "failed"}, what="training", timeout=300)
    assert job.status == "succeeded", job.error + workers.tail()
    version = job.candidate
    wait_for(lambda: ModelVersion.objects.get(pk=version.pk).status not in {"candidate", "evaluating"},
             what="the gate", timeout=300)
    # then
    version.refresh_from_db()
    assert version.status == "awaiting_approval", (version.gate.reasons, workers.tail())
    assert version.parent == job.parent_version and version.parent.status == "production"
    assert version.gate.rows[0]["after"] > version.gate.rows[0]["before"]
    assert job.metric_points.count() >= 2 and job.step == job.total_steps
    assert version.promotion_requests.get().requested_by == people["alice"]
    kinds = list(JobEvent.objects.filter(job=job).values_list("kind", flat=True))
    assert kinds[:4] == ["requested", "queued", "running", "succeeded"] and "gate_pass" in kinds


def test_a_cancelled_job_ends_cancelled_and_leaves_no_candidate(ok_skill, people, workers, artifacts):
    workers.start()
    job = _request(ok_skill, people, num_epochs=100)
    wait_for(lambda: _job(job).status == "running" and job.step >= 1, what="the first step")
    job_cancel_request(job=job, actor=people["alice"])
    wait_for(lambda: _job(job).status != "running", what="the cancel", timeout=120)
    assert job.status == "cancelled"
    assert not ModelVersion.objects.filter(training_job=job).exists()
    output_dir, work_dir = job_dirs(job.pk)
    assert not output_dir.exists() and not work_dir.exists()
    assert ModelVersion.objects.get(status="production") == job.parent_version


def test_a_worker_killed_mid_training_is_recovered_from_its_checkpoint(ok_skill, people, workers):
    # given a job that checkpoints every 2 steps, running on a worker
    first = workers.start(name="doomed")
    job = _request(ok_skill, people, num_epochs=4, checkpoint_every=2)
    wait_for(lambda: _job(job).status == "running" and job.step >= 3, what="step 3")
    # when the worker host dies
    workers.kill(first)
    assert _job(job).status == "running"
    # then the reaper re-queues it (its heartbeat went silent) and a new worker resumes it
    later = timezone.now() + timezone.timedelta(hours=1)
    assert job_reap_stale(now=later) == [(job.pk, "queued")]
    workers.start(name="rescuer")
    wait_for(lambda: _job(job).status in {"succeeded", "failed"}, what="the resumed job", timeout=300)
    assert job.status == "succeeded", job.error + workers.tail()
    assert job.attempts == 2
    assert ModelVersion.objects.filter(training_job=job).count() == 1
    assert job.candidate.metrics["resumed_from_step"] >= 2


def test_a_job_delivered_twice_trains_once(ok_skill, people, workers):
    from workers.tasks import train_job

    job = _request(ok_skill, people)
    train_job.delay(job.pk)  # the broker delivers the same job a second time
    workers.start()
    wait_for(lambda: _job(job).status == "succeeded", what="training", timeout=300)
    wait_for(lambda: not TrainingJob.objects.filter(pk=job.pk, candidate__status__in=["candidate", "evaluating"]).exists(),
             what="the gate", timeout=300)
    assert ModelVersion.objects.filter(training_job=job).count() == 1
    assert JobEvent.objects.filter(job=job, kind="running").count() == 1


def _promoted_sibling(skill, parent, people):
    """Another candidate from the same parent, gated (on recorded scores) and approved while our job runs."""
    from registry.services.gates import gate_evaluate, gate_start
    from registry.services.versions import version_create_candidate
    from tests.fixtures.registry import gate_scores_record, promote

    job = TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.get(),
                                     parent_version=parent, status="succeeded", requested_by=people["alice"])
    version = gate_start(version=version_create_candidate(job=job, artifact_path=parent.artifact_path,
                                                          adapter_path="", checksums={}, metrics={}))
    gate_scores_record(version, learned=True)
    assert gate_evaluate(candidate=version).verdict == "pass"
    return promote(version, requester=people["alice"], approver=people["bob"])


def test_a_candidate_goes_stale_when_production_moves_under_its_job(ok_skill, people, workers):
    # given a running job that started from the current production version
    workers.start()
    job = _request(ok_skill, people, num_epochs=30)
    wait_for(lambda: _job(job).status == "running", what="the job to start")
    # when another candidate of the same parent is promoted meanwhile
    _promoted_sibling(ok_skill, job.parent_version, people)
    # then the job's candidate is stale once gated, and cannot be promoted
    wait_for(lambda: _job(job).status == "succeeded", what="training", timeout=300)
    wait_for(lambda: ModelVersion.objects.get(training_job=job).status not in {"candidate", "evaluating"},
             what="the gate", timeout=300)
    assert ModelVersion.objects.get(training_job=job).status == "stale"


def test_two_jobs_run_at_once_on_two_workers(ok_skill, people, workers):
    workers.start(queues="train", name="gpu0")
    workers.start(queues="train", name="gpu1")
    a = _request(ok_skill, people, num_epochs=30)
    b = _request(ok_skill, people, num_epochs=30)
    wait_for(lambda: _job(a).status == "running" and _job(b).status == "running", what="both jobs running",
             timeout=180)
    assert {a.worker, b.worker} == {f"gpu0@{a.worker.split('@')[1]}", f"gpu1@{a.worker.split('@')[1]}"}
    for job in (a, b):
        job_cancel_request(job=job, actor=people["alice"])
