import pytest

from workers.engine.artifacts import tree_checksum
from workers.engine.model_io import ModelImportError, import_hf


def test_import_hf_copies_and_describes_the_model(tiny_model_dir, tmp_path):
    imported = import_hf(tiny_model_dir, tmp_path / "store" / "base")
    assert imported.sha256 == tree_checksum(tiny_model_dir) == tree_checksum(tmp_path / "store" / "base")
    assert imported.architecture == "LlamaForCausalLM" and imported.context_length == 2048
    assert imported.num_parameters > 0


@pytest.mark.parametrize(
    "missing, fragment",
    [("config.json", "config.json is missing"), ("model.safetensors", r"no \*\.safetensors"),
     ("tokenizer.json", "no tokenizer")],
)
def test_import_hf_names_the_missing_file(tiny_model_dir, tmp_path, missing, fragment):
    import shutil

    source = tmp_path / "src"
    shutil.copytree(tiny_model_dir, source)
    (source / missing).unlink()
    with pytest.raises(ModelImportError, match=fragment):
        import_hf(source, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
