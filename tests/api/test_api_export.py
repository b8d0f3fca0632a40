"""Exporting a version through the API: the manifest, the streamed .tar of the merged model or of the
adapter alone, team privacy, the audit, and what a damaged or deleted artifact answers."""

import hashlib
import io
import tarfile

import pytest

from tests.fixtures.exports import flip_a_byte, retention_deletes_the_merged_weights


def _archive(response) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:") as archive:
        return {member.name: archive.extractfile(member).read() for member in archive}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def version(stored_candidate, skill):
    return stored_candidate(skill)


def test_the_manifest_lists_each_file_of_the_model_with_its_size_and_recorded_sha256(api, version, artifacts):
    manifest = api("vera").get(f"/versions/{version.number}/manifest").json()

    paths = {f["path"] for f in manifest["files"]}
    assert {"config.json", "model.safetensors", "tokenizer.json", "accrete.json"} <= paths
    assert not [p for p in paths if p.startswith("adapter")]
    for f in manifest["files"]:
        assert f["sha256"] == version.checksums[f["path"]]
        assert f["size"] == (artifacts / version.artifact_path / f["path"]).stat().st_size
    assert manifest["total_bytes"] == sum(f["size"] for f in manifest["files"])
    assert manifest["archive"] == f"v{version.number}-model.tar"


def test_the_model_exports_as_a_tar_of_its_folder_without_the_adapter(api, version):
    manifest = api("alice").get(f"/versions/{version.number}/manifest").json()

    response = api("alice").get(f"/versions/{version.number}/export")

    assert response.status_code == 200 and response["Content-Type"] == "application/x-tar"
    assert f'filename="v{version.number}-model.tar"' in response["Content-Disposition"]
    files = _archive(response)
    assert {name: _sha(data) for name, data in files.items()} == {f["path"]: f["sha256"] for f in manifest["files"]}


def test_the_archive_is_exactly_as_long_as_it_says(api, version):
    response = api("alice").get(f"/versions/{version.number}/export")

    assert len(b"".join(response.streaming_content)) == int(response["Content-Length"])


def test_the_adapter_exports_alone_at_the_archives_root_with_accrete_json(api, version):
    manifest = api("alice").get(f"/versions/{version.number}/manifest", part="adapter").json()

    files = _archive(api("alice").get(f"/versions/{version.number}/export", part="adapter"))

    assert {"adapter_config.json", "adapter_model.safetensors", "accrete.json"} <= set(files)
    assert "model.safetensors" not in files and "config.json" not in files
    assert files["adapter_model.safetensors"] and _sha(files["adapter_model.safetensors"]) == \
        version.checksums["adapter/adapter_model.safetensors"]
    assert {f["path"] for f in manifest["files"]} == set(files)


def test_each_export_is_audited_under_the_token(api, version):
    from audit.models import AuditEvent

    api("alice").get(f"/versions/{version.number}/export", part="adapter")

    event = AuditEvent.objects.get(action="version.exported")
    assert event.object_id == str(version.pk) and event.data["part"] == "adapter"
    assert event.actor_label.startswith("alice via token")


def test_another_teams_candidate_is_not_found(api, version):
    for path in (f"/versions/{version.number}/export", f"/versions/{version.number}/manifest"):
        response = api("carol").get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"


def test_a_tampered_file_refuses_the_export_naming_it_before_any_byte_is_sent(api, version, artifacts):
    from audit.models import AuditEvent

    flip_a_byte(artifacts / version.artifact_path / "model.safetensors")

    response = api("alice").get(f"/versions/{version.number}/export")

    assert response.status_code == 409 and response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "artifact-tampered"
    assert "model.safetensors" in response.json()["detail"]
    assert not AuditEvent.objects.filter(action="version.exported").exists()


def test_the_problem_types_of_an_export_say_what_they_mean(api, db):
    from django.test import Client

    for code in ("artifact-tampered", "artifact-deleted"):
        assert Client().get(f"/api/v1/problems/{code}").status_code == 200


def test_a_file_changed_while_it_is_sent_is_cut_off_before_its_end(api, version, artifacts):
    from workers.engine.contract.storage import ArtifactTampered

    response = api("alice").get(f"/versions/{version.number}/export")  # checked: nothing sent yet
    weights = artifacts / version.artifact_path / "model.safetensors"
    flip_a_byte(weights, at=weights.stat().st_size - 1)
    changed_tail = weights.read_bytes()[-1000:]

    sent = []
    with pytest.raises(ArtifactTampered, match="model.safetensors"):
        for chunk in response.streaming_content:
            sent.append(chunk)

    assert changed_tail not in b"".join(sent)  # the changed file's last chunk never went out


def test_merged_weights_the_retention_policy_deleted_answer_410_and_the_adapter_still_exports(api, version,
                                                                                             artifacts):
    retention_deletes_the_merged_weights(version, artifacts)

    refused = api("alice").get(f"/versions/{version.number}/export")
    adapter = api("alice").get(f"/versions/{version.number}/export", part="adapter")

    assert refused.status_code == 410 and refused.json()["code"] == "artifact-deleted"
    assert "keeps only the adapter" in refused.json()["detail"] and "--adapter" in refused.json()["detail"]
    assert adapter.status_code == 200
    assert {"adapter_model.safetensors", "accrete.json"} <= set(_archive(adapter))


def test_merged_weights_missing_from_the_store_answer_410_naming_them(api, version, artifacts):
    (artifacts / version.artifact_path / "model.safetensors").unlink()

    refused = api("alice").get(f"/versions/{version.number}/manifest")

    assert refused.status_code == 410 and "model.safetensors" in refused.json()["detail"]
    assert "keeps only the adapter" in refused.json()["detail"]


def test_a_version_gone_from_the_store_answers_410(api, version, artifacts):
    import shutil

    shutil.rmtree(artifacts / version.artifact_path)

    response = api("alice").get(f"/versions/{version.number}/manifest", part="adapter")

    assert response.status_code == 410 and "no longer in the artifact store" in response.json()["detail"]


def test_a_base_version_exports_when_its_files_match_their_import_checksum(api, people, artifacts, candidate_files):
    import shutil

    from registry.services.base_models import base_model_register
    from workers.engine.contract.storage import tree_sha256

    shutil.copytree(candidate_files, artifacts / "base" / "real")
    base = base_model_register(name="real", source="hf", source_path="/src", artifact_path="base/real",
                               sha256=tree_sha256(artifacts / "base" / "real"), architecture="LlamaForCausalLM",
                               num_parameters=1, context_length=2048, probes=[])

    files = _archive(api("vera").get(f"/versions/{base.number}/export"))
    no_adapter = api("vera").get(f"/versions/{base.number}/export", part="adapter")
    flip_a_byte(artifacts / "base" / "real" / "tokenizer.json")
    tampered = api("vera").get(f"/versions/{base.number}/export")

    assert "model.safetensors" in files and "adapter/adapter_model.safetensors" in files
    assert no_adapter.status_code == 409 and "no adapter" in no_adapter.json()["detail"]
    assert tampered.status_code == 409 and tampered.json()["code"] == "artifact-tampered"


def test_a_version_without_recorded_checksums_is_not_exported(api, make_candidate, skill):
    version = make_candidate(skill, status="candidate")  # recorded with no checksums

    response = api("alice").get(f"/versions/{version.number}/export")

    assert response.status_code == 409 and "no recorded checksums" in response.json()["detail"]


def test_part_is_model_or_adapter(api, version):
    assert api("alice").get(f"/versions/{version.number}/export", part="weights").status_code == 422
