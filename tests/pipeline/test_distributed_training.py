"""A train worker set to ACCRETE_TRAIN_PROCESSES=2 runs a job over two processes (torchrun, gloo on the CPU):
the job still reports its steps, produces a gated version, and stops on a cancel, through real workers."""

import psutil
import pytest

from registry.models import ModelVersion
from tests.fixtures.workers import FAST_SFT, wait_for
from training.models import TrainingJob
from training.services import job_cancel_request, job_request
from workers.pipeline import job_dirs

pytestmark = [pytest.mark.needs_services, pytest.mark.django_db(transaction=True)]
TWO_PROCESSES = {"ACCRETE_TRAIN_PROCESSES": "2"}


def _request(skill, people, **config):
    dset = skill.demonstration_sets.get()
    return job_request(skill=skill, demonstration_set=dset, method="sft", config={**FAST_SFT, **config},
                       actor=people["alice"])


def _job(job) -> TrainingJob:
    job.refresh_from_db()
    return job


def _ranks_of(work_dir) -> list:
    return [proc for proc in psutil.process_iter(["cmdline"]) if str(work_dir) in " ".join(proc.info["cmdline"] or [])]


def test_a_job_on_a_two_process_worker_becomes_a_gated_version(ok_skill, people, workers):
    # given a train worker that runs each job over two processes
    workers.start(env=TWO_PROCESSES)
    # when a job is trained, evaluated and gated
    job = _request(ok_skill, people)
    wait_for(lambda: _job(job).status in {"succeeded", "failed"}, what="training", timeout=300)
    assert job.status == "succeeded", job.error + workers.tail()
    version = job.candidate
    wait_for(lambda: ModelVersion.objects.get(pk=version.pk).status not in {"candidate", "evaluating"},
             what="the gate", timeout=300)
    # then it trained over two processes, reported its steps, and learned the skill like a one-process job
    version.refresh_from_db()
    assert version.metrics["processes"] == 2
    assert job.step == job.total_steps and job.metric_points.count() >= 2
    assert version.status == "awaiting_approval", (version.gate.reasons, workers.tail())
    assert version.gate.rows[0]["after"] > version.gate.rows[0]["before"]
    assert not job_dirs(job.pk)[1].exists()


def test_cancelling_a_two_process_job_stops_its_ranks(ok_skill, people, workers):
    workers.start(env=TWO_PROCESSES)
    job = _request(ok_skill, people, num_epochs=100)
    wait_for(lambda: _job(job).status == "running" and job.step >= 1, what="the first step")
    work_dir = job_dirs(job.pk)[1]
    assert _ranks_of(work_dir), "the job should be running in its own processes"
    job_cancel_request(job=job, actor=people["alice"])
    wait_for(lambda: _job(job).status != "running", what="the cancel", timeout=120)
    assert job.status == "cancelled"
    assert not ModelVersion.objects.filter(training_job=job).exists()
    assert not job_dirs(job.pk)[0].exists() and not work_dir.exists()
    wait_for(lambda: not _ranks_of(work_dir), what="the ranks to exit", timeout=30)
