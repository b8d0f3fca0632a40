"""The artifact store: a local folder and an S3-compatible bucket (moto's real server, started by the tests)
behave the same; every load is checked against the recorded checksums, and a changed byte is refused by
name; a host's cache fetches a version once and serves later loads from a verified copy."""

import hashlib
import threading
from pathlib import Path

import pytest

from workers.engine.artifacts import sha256_tree
from workers.engine.contract.storage import (
    ArtifactMissing,
    ArtifactTampered,
    LocalStore,
    S3Store,
    cached_copy,
    checksums_key,
    open_store,
    verify_files,
)


def version_folder(root: Path) -> Path:
    """A candidate's layout, small: merged weights, tokenizer, adapter/, accrete.json."""
    root.mkdir(parents=True)
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "adapter").mkdir()
    (root / "adapter" / "adapter_model.safetensors").write_bytes(b"lora" * 100)
    (root / "accrete.json").write_text('{"format": 1}')
    return root


def flip_a_byte(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(bucket.url("artifacts"))


def test_a_tree_put_in_the_store_comes_back_identical(store, tmp_path):
    # given a version's folder
    source = version_folder(tmp_path / "job-7")
    # when it is put in the store and fetched into another folder
    store.put_tree(source, "versions/job-7")
    store.get_tree("versions/job-7", tmp_path / "fetched")
    # then every file is there, byte for byte, and the store lists them with their sizes
    assert sha256_tree(tmp_path / "fetched") == sha256_tree(source)
    assert store.list_files("versions/job-7") == ["accrete.json", "adapter/adapter_model.safetensors",
                                                 "config.json", "model.safetensors"]
    assert store.file_sizes("versions/job-7")["model.safetensors"] == 256 * 64
    with store.open_file("versions/job-7", "config.json") as handle:
        assert handle.read() == b'{"model_type": "llama"}'


def test_deleting_some_files_keeps_the_others(store, tmp_path):
    store.put_tree(version_folder(tmp_path / "job-7"), "versions/job-7")
    store.put_tree(version_folder(tmp_path / "job-70"), "versions/job-70")  # a key that shares a prefix
    # when
    store.delete("versions/job-7", ["model.safetensors", "config.json"])
    # then
    assert store.list_files("versions/job-7") == ["accrete.json", "adapter/adapter_model.safetensors"]
    assert len(store.list_files("versions/job-70")) == 4
    store.delete("versions/job-7")
    with pytest.raises(ArtifactMissing, match="versions/job-7 is not in the artifact store"):
        store.list_files("versions/job-7")
    assert len(store.list_files("versions/job-70")) == 4


def test_a_key_outside_the_store_is_refused(store):
    with pytest.raises(ValueError, match="outside the store|not a relative path"):
        store.list_files("../elsewhere")


def test_putting_a_tree_again_leaves_exactly_the_new_tree(s3_bucket, tmp_path):
    store = open_store(s3_bucket.url())
    first = version_folder(tmp_path / "first")
    (first / "partial-shard.bin").write_bytes(b"left by an interrupted upload")
    store.put_tree(first, "versions/job-7")
    store.put_tree(version_folder(tmp_path / "second"), "versions/job-7")
    assert "partial-shard.bin" not in store.list_files("versions/job-7")


def test_a_big_file_goes_up_in_parts_and_comes_back_whole(s3_bucket, tmp_path):
    # given a store that splits files above 5 MiB (S3's smallest part) into 5 MiB parts
    store = open_store(s3_bucket.url("prefix/deeper"))
    store.multipart_threshold = store.multipart_chunksize = 5 * 1024 * 1024
    source = tmp_path / "big"
    source.mkdir()
    (source / "model-00001-of-00001.safetensors").write_bytes(hashlib.sha256(b"x").digest() * (11 * 2**20 // 32))
    # when
    store.put_tree(source, "versions/job-9")
    # then S3 assembled it from three parts (a multipart ETag ends in "-<parts>"), under the prefix
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name,
                                        Key="prefix/deeper/versions/job-9/model-00001-of-00001.safetensors")
    assert head["ETag"].strip('"').endswith("-3")
    store.get_tree("versions/job-9", tmp_path / "back")
    assert sha256_tree(tmp_path / "back") == sha256_tree(source)


def test_open_store_reads_the_setting():
    s3 = open_store("s3://accrete/artifacts/")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("accrete", "artifacts")
    assert s3.local_dir("versions/job-1") is None
    assert isinstance(open_store("/var/accrete/artifacts"), LocalStore)
    with pytest.raises(ValueError, match="names no bucket"):
        open_store("s3:///artifacts")


def test_a_changed_byte_is_refused_naming_the_file(tmp_path):
    # given a version and the checksums recorded when it was written
    folder = version_folder(tmp_path / "job-7")
    checksums = sha256_tree(folder)
    verify_files(folder, checksums, label="v7")  # intact: accepted
    # when one byte of the merged weights changes (same size)
    flip_a_byte(folder / "model.safetensors")
    # then
    with pytest.raises(ArtifactTampered, match=r"v7: model\.safetensors has sha256 .* Refusing to load it"):
        verify_files(folder, checksums, label="v7")


def test_a_missing_file_is_refused_naming_it(tmp_path):
    folder = version_folder(tmp_path / "job-7")
    checksums = sha256_tree(folder)
    (folder / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(ArtifactTampered, match="adapter/adapter_model.safetensors is missing"):
        verify_files(folder, checksums)


def test_a_base_models_tree_checksum_catches_a_changed_byte(tmp_path):
    from workers.engine.contract.storage import tree_sha256

    folder = version_folder(tmp_path / "base")
    recorded = {"tree": tree_sha256(folder)}
    verify_files(folder, recorded)
    flip_a_byte(folder / "config.json", at=3)
    with pytest.raises(ArtifactTampered, match="do not match the checksum recorded at import"):
        verify_files(folder, recorded)


class CountingStore:
    """The S3 store, counting the downloads."""

    def __init__(self, store):
        self.store, self.downloads = store, 0
        self.lock = threading.Lock()

    def get_tree(self, key, dest, relpaths=None):
        with self.lock:
            self.downloads += 1
        self.store.get_tree(key, dest, relpaths)


def test_the_cache_fetches_a_version_once_and_verifies_every_load(s3_bucket, tmp_path):
    # given a version in the bucket
    source = version_folder(tmp_path / "job-7")
    checksums = sha256_tree(source)
    s3 = open_store(s3_bucket.url())
    s3.put_tree(source, "versions/job-7")
    store, cache = CountingStore(s3), tmp_path / "cache"
    # when two loaders on this host ask for it at once
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(cached_copy(store, "versions/job-7", checksums, cache)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then it was downloaded once, into the folder named by its checksums, and nothing half-written is left
    assert store.downloads == 1
    assert paths == [cache / checksums_key(checksums)] * 2
    assert sha256_tree(paths[0]) == checksums
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [checksums_key(checksums)]
    # and a copy damaged on this host is fetched again, not served
    flip_a_byte(paths[0] / "model.safetensors")
    assert cached_copy(store, "versions/job-7", checksums, cache) == paths[0]
    assert store.downloads == 2 and sha256_tree(paths[0]) == checksums


def test_a_version_changed_in_the_bucket_is_refused_and_not_cached(s3_bucket, tmp_path):
    # given a version whose merged weights were changed in the bucket after they were written
    source = version_folder(tmp_path / "job-7")
    checksums = sha256_tree(source)
    flip_a_byte(source / "model.safetensors")
    store = open_store(s3_bucket.url())
    store.put_tree(source, "versions/job-7")
    # when a worker loads it
    with pytest.raises(ArtifactTampered, match=r"v7: model\.safetensors has sha256"):
        cached_copy(store, "versions/job-7", checksums, tmp_path / "cache", label="v7")
    # then nothing is left in the cache to load later
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_a_version_without_checksums_is_never_loaded(s3_bucket, tmp_path):
    store = open_store(s3_bucket.url())
    store.put_tree(version_folder(tmp_path / "job-7"), "versions/job-7")
    with pytest.raises(ArtifactTampered, match="no checksums are recorded"):
        cached_copy(store, "versions/job-7", {}, tmp_path / "cache", label="v7")


def test_a_file_the_version_was_not_written_with_is_refused(tmp_path):
    from workers.engine.contract.storage import ArtifactTampered, verify_files

    folder = version_folder(tmp_path / "job-8")
    checksums = sha256_tree(folder)
    (folder / "chat_template.jinja").write_text("{{ 'I was added later' }}")  # would change what loads

    with pytest.raises(ArtifactTampered, match="chat_template.jinja is in .* but was not written with the version"):
        verify_files(folder, checksums, label="v8")


def test_a_key_that_points_outside_the_folder_is_never_written(s3_bucket, tmp_path):
    from workers.engine.contract.storage import ArtifactTampered

    store = open_store(s3_bucket.url())
    store.put_tree(version_folder(tmp_path / "job-9"), "versions/job-9")
    for evil in ("../../escaped.txt", "/etc/passwd", "a/../../b"):
        with pytest.raises(ArtifactTampered, match="not a file name inside"):
            store.get_tree("versions/job-9", tmp_path / "dest", [evil])
    assert not (tmp_path / "escaped.txt").exists()
