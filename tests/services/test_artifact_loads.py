"""Every load of a version goes through workers.pipeline.version_model_dir: its files are checked against the
checksums recorded when they were written, from the local store or from this host's cache of an S3 store,
and a tampered file is refused by name — on the real gate path too."""

import shutil
from pathlib import Path

import pytest

from registry.models import ModelVersion
from workers.engine.artifacts import sha256_tree
from workers.engine.contract.storage import ArtifactMissing, ArtifactTampered, checksums_key, open_store
from workers.pipeline import version_model_dir


def flip_a_byte(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def unsaved_version(folder: Path, key: str, **fields) -> ModelVersion:
    return ModelVersion(number=7, artifact_path=key, adapter_path=f"{key}/adapter", checksums=sha256_tree(folder),
                        **fields)


@pytest.fixture
def files(tmp_path, tiny_model_dir) -> Path:
    folder = tmp_path / "job-7"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_a_local_version_loads_from_the_store_itself_once_verified(artifacts, files):
    shutil.copytree(files, artifacts / "versions" / "job-7")
    version = unsaved_version(files, "versions/job-7")
    assert version_model_dir(version) == (artifacts / "versions" / "job-7").resolve()
    # when a byte of the stored weights changes
    flip_a_byte(artifacts / "versions" / "job-7" / "model.safetensors")
    # then the next load is refused, naming the file
    with pytest.raises(ArtifactTampered, match=r"v7: model\.safetensors has sha256"):
        version_model_dir(version)


def test_a_version_without_checksums_is_refused(artifacts, files):
    shutil.copytree(files, artifacts / "versions" / "job-7")
    version = ModelVersion(number=7, artifact_path="versions/job-7", checksums={})
    with pytest.raises(ArtifactTampered, match="no checksums are recorded for versions/job-7"):
        version_model_dir(version)


def test_a_version_missing_from_the_store_says_where_it_looked(artifacts, s3_bucket, settings, tmp_path, files):
    version = unsaved_version(files, "versions/job-7")
    with pytest.raises(ArtifactMissing, match=r"v7's files are not in the artifact store: .*versions/job-7"):
        version_model_dir(version)
    settings.ACCRETE_ARTIFACTS = s3_bucket.url("artifacts")
    settings.ACCRETE_ARTIFACT_CACHE = tmp_path / "cache"
    with pytest.raises(ArtifactMissing, match=r"versions/job-7 is not in the artifact store \(s3://accrete-"):
        version_model_dir(version)


def test_an_s3_version_loads_from_this_hosts_verified_cache(s3_bucket, settings, tmp_path, files):
    # given the store is a bucket, the version is in it, and this host has an empty cache
    settings.ACCRETE_ARTIFACTS = s3_bucket.url("artifacts")
    settings.ACCRETE_ARTIFACT_CACHE = tmp_path / "cache"
    open_store(settings.ACCRETE_ARTIFACTS).put_tree(files, "versions/job-7")
    version = unsaved_version(files, "versions/job-7")
    # when it is loaded
    folder = version_model_dir(version)
    # then the load reads a copy in the cache, named by the checksums, byte for byte the version
    assert folder == tmp_path / "cache" / checksums_key(version.checksums)
    assert sha256_tree(folder) == version.checksums


def test_an_s3_version_changed_in_the_bucket_is_refused(s3_bucket, settings, tmp_path, files):
    settings.ACCRETE_ARTIFACTS = s3_bucket.url("artifacts")
    settings.ACCRETE_ARTIFACT_CACHE = tmp_path / "cache"
    version = unsaved_version(files, "versions/job-7")
    flip_a_byte(files / "tokenizer.json", at=10)
    open_store(settings.ACCRETE_ARTIFACTS).put_tree(files, "versions/job-7")
    with pytest.raises(ArtifactTampered, match=r"v7: tokenizer\.json has sha256"):
        version_model_dir(version)
    assert not (tmp_path / "cache" / checksums_key(version.checksums)).exists()


@pytest.mark.django_db
def test_a_tampered_candidate_is_refused_by_the_gate_naming_the_file(gate_lineage, artifacts):
    from workers.pipeline import run_candidate_gate

    # given a candidate whose merged weights had one byte changed after training wrote them
    candidate = gate_lineage.clean
    flip_a_byte(artifacts / candidate.artifact_path / "model.safetensors", at=4096)
    # when a worker gates it
    with pytest.raises(ArtifactTampered, match=r"model\.safetensors has sha256 .* Refusing to load it"):
        run_candidate_gate(candidate.pk)
    # then it was never scored: the gate failed, saying which file, and its eval run says so too
    candidate.refresh_from_db()
    assert candidate.status == "failed"
    assert "ArtifactTampered" in candidate.gate_error and "model.safetensors" in candidate.gate_error
    runs = candidate.eval_runs.all()  # one pass over its three suites (echo, tagging, probes): each run failed
    assert [run.status for run in runs] == ["failed"] * 3 and all("model.safetensors" in run.error for run in runs)
    # and its untouched sibling passes through the same gate
    run_candidate_gate(gate_lineage.damaged.pk)
    gate_lineage.damaged.refresh_from_db()
    assert gate_lineage.damaged.status == "blocked"
