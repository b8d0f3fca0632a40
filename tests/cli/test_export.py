"""`accrete export VERSION DIR [--adapter]` against the live server: the folder it writes loads with
transformers and generates; every file is checked against the manifest, and a damaged one leaves nothing."""

import pytest

from tests.fixtures.exports import flip_a_byte, retention_deletes_the_merged_weights


@pytest.fixture
def version(stored_candidate, skill):
    return stored_candidate(skill)


@pytest.fixture
def faulty_hop(live_server, monkeypatch):
    """The live server behind a hop that flips one byte of model.safetensors in every export it passes on
    (the tar's structure and length intact): what the server sent is no longer what its manifest lists."""
    httpd = live_server.thread.httpd
    app = httpd.get_app()

    def damaged(body):
        try:
            state = "before"
            for chunk in body:
                if state == "next" and len(chunk) > 10:
                    chunk, state = chunk[:10] + bytes([chunk[10] ^ 0xFF]) + chunk[11:], "done"
                if state == "before" and len(chunk) % 512 == 0 and chunk.startswith(b"model.safetensors\0"):
                    state = "next"  # the member's header: its data comes next
                yield chunk
        finally:
            getattr(body, "close", lambda: None)()

    def hop(environ, start_response):
        body = app(environ, start_response)
        return damaged(body) if environ["PATH_INFO"].endswith("/export") else body

    monkeypatch.setattr(httpd, "application", hop)


def test_the_exported_folder_loads_and_generates_as_the_version(accrete, version, artifacts, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "v-export"

    ran = accrete("export", f"v{version.number}", str(out), user="vera")

    assert ran.code == 0, ran.err
    assert f"Exported v{version.number}" in ran.out and "every sha256 matches the manifest" in ran.out
    assert not (out / "adapter").exists() and (out / "accrete.json").is_file()
    exported = AutoModelForCausalLM.from_pretrained(out)
    stored = AutoModelForCausalLM.from_pretrained(artifacts / version.artifact_path)
    ids = AutoTokenizer.from_pretrained(out)("The travel policy code is", return_tensors="pt").input_ids
    with torch.no_grad():
        generated = exported.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
        assert torch.equal(exported(ids).logits, stored(ids).logits)
    assert generated.shape[1] == ids.shape[1] + 4


def test_the_adapter_exports_alone_and_loads_on_its_parent(accrete, version, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "adapter"

    ran = accrete("export", str(version.number), str(out), "--adapter")

    assert ran.code == 0, ran.err
    assert {"adapter_config.json", "adapter_model.safetensors", "accrete.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "model.safetensors").exists()
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out)  # raises if unusable


def test_a_tampered_file_in_the_store_refuses_the_export_naming_it(accrete, version, artifacts, tmp_path):
    flip_a_byte(artifacts / version.artifact_path / "model.safetensors")
    out = tmp_path / "out"

    ran = accrete("export", str(version.number), str(out))

    assert ran.code == 1
    assert "model.safetensors" in ran.err and "not exported" in ran.err
    assert not out.exists()


def test_a_file_damaged_on_its_way_is_named_and_nothing_is_kept(accrete, version, faulty_hop, tmp_path):
    out = tmp_path / "out"

    ran = accrete("export", str(version.number), str(out))

    assert ran.code == 1
    assert "model.safetensors arrived with sha256" in ran.err and "Nothing was kept" in ran.err
    assert not out.exists()


def test_another_teams_candidate_is_not_found(accrete, version, tmp_path):
    out = tmp_path / "out"

    ran = accrete("export", str(version.number), str(out), user="carol")

    assert ran.code == 2 and "There is nothing here" in ran.err
    assert not out.exists()


def test_a_folder_that_is_not_empty_is_refused_unless_forced(accrete, version, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    refused = accrete("export", str(version.number), str(out))
    forced = accrete("export", str(version.number), str(out), "--force")

    assert refused.code == 2 and "not empty" in refused.err and "--force" in refused.err
    assert forced.code == 0, forced.err
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").is_file()


def test_after_the_retention_policy_only_the_adapter_exports(accrete, version, artifacts, tmp_path):
    retention_deletes_the_merged_weights(version, artifacts)

    model = accrete("export", str(version.number), str(tmp_path / "model"))
    adapter = accrete("export", str(version.number), str(tmp_path / "adapter"), "--adapter")

    assert model.code == 1 and "keeps only the adapter" in model.err and "--adapter" in model.err
    assert adapter.code == 0, adapter.err
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
