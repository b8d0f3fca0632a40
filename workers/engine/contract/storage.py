"""The artifact store: where model versions' files live, behind one small interface.

`open_store(setting)` gives the store ACCRETE_ARTIFACTS names: a local folder (the embedded default) or,
for `s3://bucket/prefix`, an S3-compatible bucket (AWS S3, MinIO, moto) that workers on several hosts share.
Keys are the relative `artifact_path`s the registry records (e.g. `versions/job-7`); a key is a folder of
files.

Pure Python (no torch): the web process uses it to stream an export, the workers to fetch a version into
their local cache (`cached_copy`, keyed by a checksum of the version's checksums). Every load checks the
files against the checksums the registry recorded (`verify_files`): a mismatch refuses, naming the file."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

_CHUNK = 1 << 20
log = logging.getLogger(__name__)


class ArtifactTampered(Exception):
    """A file of a stored version does not match the checksum recorded when it was written."""


class ArtifactMissing(FileNotFoundError):
    """A version's files are not in the store (deleted by the retention policy, or never written)."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(folder: str | os.PathLike, checksums: dict[str, str], *, label: str = "",
                 exact: bool = True) -> None:
    """Refuse (ArtifactTampered, naming the file) unless every file `checksums` lists is in `folder` with
    that sha256 — and, `exact`, no other file is (an added file, say a chat template, would change what
    loads). A `{"tree": …}` entry (an imported base model) is checked over the whole folder."""
    folder = Path(folder)
    what = f"{label}: " if label else ""
    if exact and "tree" not in checksums:
        extra = sorted(set(_relpaths(folder)) - set(checksums))
        if extra:
            raise ArtifactTampered(f"{what}{extra[0]} is in {folder} but was not written with the version "
                                   f"({len(extra)} such file(s)): refusing to load it.")
    for relpath, expected in sorted(checksums.items()):
        if relpath == "tree":
            actual = tree_sha256(folder)
            if actual != expected:
                raise ArtifactTampered(f"{what}the files under {folder} do not match the checksum recorded at "
                                       f"import (tree sha256 {actual[:12]}… ≠ {expected[:12]}…): re-import it.")
            continue
        path = folder / relpath
        if not path.is_file():
            raise ArtifactTampered(f"{what}{relpath} is missing from {folder}.")
        actual = file_sha256(path)
        if actual != expected:
            raise ArtifactTampered(f"{what}{relpath} has sha256 {actual[:12]}…, not the {expected[:12]}… recorded "
                                   "when it was written: the file was changed or damaged. Refusing to load it.")


def _relpaths(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]


def safe_relpath(relpath: str) -> str:
    """A file's path inside a version's folder, refused (ArtifactTampered) when it could point outside it."""
    parts = PurePosixPath(relpath).parts
    if not relpath or relpath.startswith("/") or "\\" in relpath or any(p in ("..", "") for p in parts):
        raise ArtifactTampered(f"{relpath!r} is not a file name inside a version's folder: refusing it.")
    return relpath


def tree_sha256(folder: str | os.PathLike) -> str:
    """One sha256 over the sorted `relpath\\0sha\\n` lines of every file under `folder`."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


class ArtifactStore(Protocol):
    def list_files(self, key: str) -> list[str]: ...

    def file_sizes(self, key: str) -> dict[str, int]:
        """relpath → size in bytes of every file under `key` (ArtifactMissing when there is none)."""

    def open_file(self, key: str, relpath: str) -> BinaryIO: ...

    def local_dir(self, key: str) -> Path | None:
        """The folder itself when the store is a local filesystem (no copy needed), else None."""

    def get_tree(self, key: str, dest: Path, relpaths: list[str] | None = None) -> None: ...

    def put_tree(self, source: Path, key: str) -> None: ...

    def delete(self, key: str, relpaths: list[str] | None = None) -> None: ...


class LocalStore:
    """A folder on a filesystem every process can read (the embedded default)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _dir(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise ValueError(f"artifact key {key!r} points outside the store")
        return path

    def local_dir(self, key: str) -> Path:
        return self._dir(key)

    def list_files(self, key: str) -> list[str]:
        folder = self._dir(key)
        if not folder.is_dir():
            raise ArtifactMissing(f"{key} is not in the artifact store ({self.root}).")
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    def file_sizes(self, key: str) -> dict[str, int]:
        folder = self._dir(key)
        return {relpath: (folder / relpath).stat().st_size for relpath in self.list_files(key)}

    def open_file(self, key: str, relpath: str) -> BinaryIO:
        return open(self._dir(key) / relpath, "rb")

    def iter_files(self, key: str) -> Iterator[tuple[str, Path]]:
        folder = self._dir(key)
        for relpath in self.list_files(key):
            yield relpath, folder / relpath

    def get_tree(self, key: str, dest: Path, relpaths: list[str] | None = None) -> None:
        if relpaths is None:
            shutil.copytree(self._dir(key), dest, dirs_exist_ok=True)
            return
        for relpath in relpaths:
            target = Path(dest) / safe_relpath(relpath)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(self._dir(key) / relpath, target)
            except FileNotFoundError:
                raise ArtifactMissing(f"{key} is not in the artifact store ({self._dir(key)}): {relpath} is "
                                      "missing.") from None

    def put_tree(self, source: Path, key: str) -> None:
        target = self._dir(key)
        if Path(source).resolve() != target:
            shutil.copytree(source, target, dirs_exist_ok=True)

    def delete(self, key: str, relpaths: list[str] | None = None) -> None:
        folder = self._dir(key)
        if relpaths is None:
            shutil.rmtree(folder, ignore_errors=True)
            return
        for relpath in relpaths:
            (folder / relpath).unlink(missing_ok=True)


def _clean_key(key: str) -> str:
    path = PurePosixPath(str(key).strip("/"))
    if not path.parts or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"artifact key {key!r} is not a relative path inside the store")
    return path.as_posix()


class S3Store:
    """An S3-compatible bucket under a prefix: what several hosts share. The endpoint comes from
    ACCRETE_S3_ENDPOINT_URL or AWS_ENDPOINT_URL (MinIO, moto; unset: AWS itself), the credentials and
    region from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION)
    or an instance role, as boto3 finds them."""

    # Above this, boto3's transfer manager splits a file into parts sent in parallel (a 7B model's shards
    # are several GB; a single PUT stops at 5 GB).
    multipart_threshold = 64 * 1024 * 1024
    multipart_chunksize = 64 * 1024 * 1024

    def __init__(self, bucket: str, prefix: str = "", *, client=None):
        if not bucket:
            raise ValueError("an S3 artifact store needs a bucket: s3://bucket/prefix")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self._client = client

    def __repr__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def client(self):
        if self._client is None:
            import boto3

            endpoint = os.environ.get("ACCRETE_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None
            self._client = boto3.client("s3", endpoint_url=endpoint)
        return self._client

    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=self.multipart_threshold, multipart_chunksize=self.multipart_chunksize)

    def _folder(self, key: str) -> str:
        key = _clean_key(key)
        return f"{self.prefix}/{key}/" if self.prefix else f"{key}/"

    def _objects(self, key: str) -> dict[str, int]:
        folder = self._folder(key)
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            for item in page.get("Contents", []):
                found[item["Key"][len(folder):]] = item["Size"]
        return found

    def local_dir(self, key: str) -> None:
        return None

    def file_sizes(self, key: str) -> dict[str, int]:
        found = self._objects(key)
        if not found:
            raise ArtifactMissing(f"{key} is not in the artifact store ({self!r}).")
        return dict(sorted(found.items()))

    def list_files(self, key: str) -> list[str]:
        return list(self.file_sizes(key))

    def open_file(self, key: str, relpath: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._folder(key) + _clean_key(relpath))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise ArtifactMissing(f"{key}/{relpath} is not in the artifact store ({self!r}).") from None
            raise

    def get_tree(self, key: str, dest: Path, relpaths: list[str] | None = None) -> None:
        """Download the files of `key` (only `relpaths` when given) under `dest`; a key that would land
        outside `dest` (`..`, an absolute path) is refused."""
        from botocore.exceptions import ClientError

        folder, config = self._folder(key), self._transfer_config()
        names = relpaths if relpaths is not None else self.list_files(key)
        for relpath in names:
            target = Path(dest) / safe_relpath(relpath)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.client.download_file(self.bucket, folder + relpath, str(target), Config=config)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                    raise
                raise ArtifactMissing(f"{key} is not in the artifact store (s3://{self.bucket}/{folder}): "
                                      f"{relpath} is missing.") from None

    def put_tree(self, source: Path, key: str) -> None:
        """Upload every file under `source` to `key`, then remove what an earlier, interrupted upload to the
        same key left that `source` does not have: afterwards the key holds exactly `source`."""
        source, folder, config = Path(source), self._folder(key), self._transfer_config()
        relpaths = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
        for relpath in relpaths:
            self.client.upload_file(str(source / relpath), self.bucket, folder + relpath, Config=config)
        leftovers = sorted(set(self._objects(key)) - set(relpaths))
        if leftovers:
            self.delete(key, leftovers)

    def delete(self, key: str, relpaths: list[str] | None = None) -> None:
        folder = self._folder(key)
        names = sorted(self._objects(key)) if relpaths is None else [_clean_key(r) for r in relpaths]
        for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys a call
            batch = [{"Key": folder + name} for name in names[start:start + 1000]]
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise OSError(f"the artifact store ({self!r}) refused to delete {first.get('Key')}: "
                              f"{first.get('Code')} {first.get('Message')}")


def parse_s3_url(text: str) -> tuple[str, str]:
    """`s3://bucket/prefix` → (bucket, prefix); refuses a URL without a bucket."""
    bucket, _, prefix = str(text).removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{text!r} names no bucket: write ACCRETE_ARTIFACTS=s3://bucket/prefix")
    return bucket, prefix.strip("/")


def open_store(setting: str | os.PathLike) -> ArtifactStore:
    """The store ACCRETE_ARTIFACTS names: `s3://bucket/prefix`, or a local folder."""
    text = str(setting)
    if text.startswith("s3://"):
        return S3Store(*parse_s3_url(text))
    return LocalStore(text)


def checksums_key(checksums: dict[str, str]) -> str:
    """The name of a version's folder in a local cache: one sha256 over its recorded checksums, so two
    versions with the same files share a copy and a version's copy never serves other content."""
    return hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # a second process loading the same version waits here
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_copy(store: ArtifactStore, key: str, checksums: dict[str, str], cache: str | os.PathLike, *,
                label: str = "") -> Path:
    """A verified local copy of `key` in `cache` (a folder of this host), fetched when it is not there yet.

    The copy is downloaded into a temp sibling, verified, and renamed into place, so a reader never sees a
    partial one; a second process asking for the same version meanwhile waits on a lock and then reuses it.
    A copy already there is verified again on every call (the cache is a folder anyone on the host can
    write); one that no longer matches is fetched again, and a fetched one that does not match is refused
    (ArtifactTampered, naming the file)."""
    if not checksums:
        raise ArtifactTampered(f"{label or key}: no checksums are recorded, so its files cannot be verified. "
                               "Refusing to load it.")
    cache = Path(cache)
    final = cache / checksums_key(checksums)
    if final.is_dir():
        try:
            verify_files(final, checksums, label=label)
            return final
        except ArtifactTampered:
            pass  # damaged, or being replaced: settled under the lock
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f".{final.name}.lock"):
        if final.is_dir():
            try:
                verify_files(final, checksums, label=label)
                return final
            except ArtifactTampered as exc:
                log.warning("the cached copy %s was changed (%s); fetching it again from %r", final, exc, store)
                shutil.rmtree(final)
        temp = cache / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            # exactly the files the registry recorded (a base model's tree: all of them)
            store.get_tree(key, temp, None if "tree" in checksums else sorted(checksums))
            verify_files(temp, checksums, label=label)
            try:
                os.rename(temp, final)
            except OSError:
                if not final.is_dir():
                    raise
                # another writer (training keeping its upload here) put it in place meanwhile: use theirs
                shutil.rmtree(temp, ignore_errors=True)
                verify_files(final, checksums, label=label)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    return final
