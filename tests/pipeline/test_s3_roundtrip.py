"""The artifact store spanning hosts: ACCRETE_ARTIFACTS=s3://… on a real S3-compatible server (moto's server
mode, started by the test). One worker trains and publishes the candidate to the bucket; another, with its
own cache (another host), fetches, verifies and gates it. No folder is shared between them."""

from pathlib import Path

import pytest

from registry.models import ModelVersion
from tests.fixtures.workers import FAST_SFT, wait_for
from training.models import TrainingJob
from training.services import job_request
from workers.engine.artifacts import sha256_tree
from workers.engine.contract.storage import checksums_key, open_store, tree_sha256

pytestmark = [pytest.mark.needs_services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def tiny_production(artifacts, s3_bucket, settings, tmp_path, tiny_model_dir):
    """The tiny model imported into the bucket (not into any local folder), production. Overrides the local
    one for this module, so ok_skill uploads against it."""
    from registry.services.base_models import base_model_register
    from workers.engine.contract.probes import load_probes

    settings.ACCRETE_ARTIFACTS = s3_bucket.url("artifacts")
    settings.ACCRETE_ARTIFACT_CACHE = tmp_path / "cache-here"
    open_store(settings.ACCRETE_ARTIFACTS).put_tree(tiny_model_dir, "base/tiny")
    return base_model_register(name="tiny", source="hf", source_path=str(tiny_model_dir), artifact_path="base/tiny",
                               sha256=tree_sha256(tiny_model_dir), architecture="LlamaForCausalLM", num_parameters=1,
                               context_length=2048, probes=load_probes()[:2])


def _host(s3_bucket, settings, cache: Path) -> dict:
    return {**s3_bucket.env(), "ACCRETE_ARTIFACTS": settings.ACCRETE_ARTIFACTS, "ACCRETE_ARTIFACT_CACHE": str(cache)}


def test_one_worker_trains_into_the_bucket_and_another_gates_from_its_own_cache(
        ok_skill, people, workers, s3_bucket, settings, tmp_path, artifacts, tiny_production):
    # given a training host and an evaluation host, each with its own cache, sharing only the bucket
    train_cache, eval_cache = tmp_path / "cache-train", tmp_path / "cache-eval"
    workers.start(queues="train", name="trainer", env=_host(s3_bucket, settings, train_cache))
    workers.start(queues="eval,default", name="evaluator", env=_host(s3_bucket, settings, eval_cache))
    # when a job is trained and its candidate gated
    job = job_request(skill=ok_skill, demonstration_set=ok_skill.demonstration_sets.get(), method="sft",
                      config=FAST_SFT, actor=people["alice"])
    wait_for(lambda: TrainingJob.objects.get(pk=job.pk).status in {"succeeded", "failed"}, what="training",
             timeout=300)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error + workers.tail()
    version = job.candidate
    wait_for(lambda: ModelVersion.objects.get(pk=version.pk).status not in {"candidate", "evaluating"},
             what="the gate", timeout=300)
    # then the candidate passed the gate on the evaluation host
    version.refresh_from_db()
    assert version.status == "awaiting_approval", (version.gate_error, workers.tail())
    # its files are in the bucket, exactly as recorded, and in no shared local folder
    store = open_store(settings.ACCRETE_ARTIFACTS)
    assert set(store.list_files(version.artifact_path)) == set(version.checksums)
    assert "adapter/adapter_model.safetensors" in version.checksums and "accrete.json" in version.checksums
    assert not (artifacts / "versions").exists()
    # the evaluation host holds verified copies of the candidate and of its parent, under their checksums
    assert sha256_tree(eval_cache / checksums_key(version.checksums)) == version.checksums
    assert tree_sha256(eval_cache / checksums_key(tiny_production.checksums)) == tiny_production.checksums["tree"]
    # the training host kept its upload as its cached copy, and nothing in its staging area
    assert sha256_tree(train_cache / checksums_key(version.checksums)) == version.checksums
    assert not any((train_cache / "staging" / "versions").iterdir())
    # and a third host (this process, serving) loads it from its own cache, verified
    from workers.pipeline import version_model_dir

    assert version_model_dir(version) == settings.ACCRETE_ARTIFACT_CACHE / checksums_key(version.checksums)
    # the inference service's own loader serves it from there: the candidate answers like it learned
    from evaluation.models import CaseResult
    from workers.serving.versions import load_version

    learned = CaseResult.objects.filter(eval_run__version=version, passed=True).select_related("case").first()
    served = load_version(version)
    reply = served.generator.generate([learned.case.prompt], max_new_tokens=8)[0]
    assert served.number == version.number and "OK" in reply, (reply, learned.output)
