"""`accrete train` queues a job with --set values typed as JSON (a bad one is refused, naming the field);
`accrete jobs` lists them; `accrete jobs watch` follows one to its end and exits by how it ended."""

import json

import pytest

from training.models import TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_bad_setting_names_the_field_and_queues_nothing(accrete, skill, base_version, fake_tasks):
    ran = accrete("train", "policy-codes", "--method", "sdft", "--set", "learning_rate=-1")

    assert ran.code == 1
    assert ran.err.startswith("error: config.learning_rate: ")
    assert not TrainingJob.objects.exists()
    assert fake_tasks.calls == []


def test_a_setting_that_is_not_key_value_is_a_usage_error(accrete, skill, base_version):
    ran = accrete("train", "policy-codes", "--method", "sdft", "--set", "learning_rate")

    assert ran.code == 2
    assert "'learning_rate' is not key=value" in ran.err
    assert not TrainingJob.objects.exists()


def test_a_good_config_queues_the_job_with_typed_values(accrete, skill, base_version, fake_tasks):
    # when
    ran = accrete("train", "policy-codes", "--method", "sft", "--set", "learning_rate=1e-4", "--set", "lora_r=8",
                  "--set", "lr_scheduler_type=linear")
    # then
    assert ran.code == 0, ran.err
    job = TrainingJob.objects.get()
    assert ran.out.startswith(f"Job {job.pk} queued: policy-codes by SFT")
    assert (job.status, job.method, job.requested_by.username) == ("queued", "sft", "alice")
    assert job.config["learning_rate"] == 1e-4 and job.config["lora_r"] == 8
    assert job.config["lr_scheduler_type"] == "linear"
    assert [(name, args) for name, args, _ in fake_tasks.calls] == [("train_job", (job.pk,))]


def test_train_json_prints_the_job_for_a_script(accrete, skill, base_version, fake_tasks):
    import json

    ran = accrete("train", "policy-codes", "--method", "sdft", "--json")

    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["id"] == TrainingJob.objects.get().pk


def _job(skill, **fields) -> TrainingJob:
    return TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.first(), **fields)


def test_jobs_lists_the_skills_jobs_as_json(accrete, skill, hr_skill):
    mine = _job(skill, status="running", step=3, total_steps=10, loss=0.5)
    _job(hr_skill, status="queued")  # HR's: not alice's to see

    ran = accrete("jobs", "--json")

    assert ran.code == 0, ran.err
    assert [(j["id"], j["status"], j["step"], j["loss"]) for j in json.loads(ran.out)] == [(mine.pk, "running", 3, 0.5)]


def test_watch_follows_a_job_to_success_and_exits_0(accrete_started, server_log, skill):
    # given a running job, and the CLI that has seen it running twice
    job = _job(skill, status="running", step=2, total_steps=10, loss=1.25, kl=0.5)
    watching = accrete_started("jobs", "watch", str(job.pk), "--interval", "0.2")
    server_log.wait_for(f"/api/v1/jobs/{job.pk}", times=2)
    # when it succeeds
    with server_log.paused:
        TrainingJob.objects.filter(pk=job.pk).update(status="succeeded", step=10, loss=0.25)
    out, err = watching.communicate(timeout=30)
    # then
    assert watching.returncode == 0, err
    assert f"Job {job.pk} succeeded." in out
    assert "loss 0.2500" in out and "10/10" in out


def test_watch_of_a_failed_job_exits_1_with_its_error(accrete, skill):
    job = _job(skill, status="failed", step=4, total_steps=10, error="CUDA out of memory at step 4")

    ran = accrete("jobs", "watch", str(job.pk), "--interval", "0.2")

    assert ran.code == 1
    assert f"Job {job.pk} failed: CUDA out of memory at step 4" in ran.err
