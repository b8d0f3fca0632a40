import pytest

from workers.engine.artifacts import atomic_directory, sha256_tree, tree_checksum


def test_a_completed_write_appears_all_at_once(tmp_path):
    target = tmp_path / "versions" / "v1"
    with atomic_directory(target) as temp:
        (temp / "weights.bin").write_bytes(b"abc")
        (temp / "sub").mkdir()
        (temp / "sub" / "config.json").write_text("{}")
        assert not target.exists()
    assert sorted(sha256_tree(target)) == ["sub/config.json", "weights.bin"]
    assert sha256_tree(target)["weights.bin"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert [p.name for p in target.parent.iterdir()] == ["v1"]


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "v1"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_directory(target) as temp:
            (temp / "weights.bin").write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_artifact_is_never_overwritten(tmp_path):
    (tmp_path / "v1").mkdir()
    with pytest.raises(FileExistsError, match="written once"):
        with atomic_directory(tmp_path / "v1"):
            pass


def test_the_tree_checksum_changes_with_content_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("1")
    first = tree_checksum(tmp_path / "a")
    (tmp_path / "a" / "x").write_text("2")
    second = tree_checksum(tmp_path / "a")
    (tmp_path / "a" / "x").rename(tmp_path / "a" / "y")
    assert len({first, second, tree_checksum(tmp_path / "a")}) == 3
