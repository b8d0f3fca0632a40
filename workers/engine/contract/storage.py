"""The artifact store: where model versions' files live, behind one small interface.

`open_store(setting)` gives the store ACCRETE_ARTIFACTS names: a local folder (the embedded default) or,
for `s3://bucket/prefix`, an S3-compatible bucket (added by the S3 backend). Keys are the relative
`artifact_path`s the registry records (e.g. `versions/job-7`); a key is a folder of files.

Pure Python (no torch): the web process uses it to stream an export, the workers to fetch a version into
their local cache. Every load checks the files against the checksums the registry recorded
(`verify_files`): a mismatch refuses, naming the file."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

_CHUNK = 1 << 20


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


def verify_files(folder: str | os.PathLike, checksums: dict[str, str], *, label: str = "") -> None:
    """Refuse (ArtifactTampered, naming the file) unless every file `checksums` lists is in `folder` with
    that sha256. A `{"tree": …}` entry (an imported base model) is checked over the whole folder."""
    folder = Path(folder)
    what = f"{label}: " if label else ""
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


def tree_sha256(folder: str | os.PathLike) -> str:
    """One sha256 over the sorted `relpath\\0sha\\n` lines of every file under `folder`."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


class ArtifactStore(Protocol):
    def list_files(self, key: str) -> list[str]: ...

    def open_file(self, key: str, relpath: str) -> BinaryIO: ...

    def local_dir(self, key: str) -> Path | None:
        """The folder itself when the store is a local filesystem (no copy needed), else None."""

    def get_tree(self, key: str, dest: Path) -> None: ...

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

    def open_file(self, key: str, relpath: str) -> BinaryIO:
        return open(self._dir(key) / relpath, "rb")

    def iter_files(self, key: str) -> Iterator[tuple[str, Path]]:
        folder = self._dir(key)
        for relpath in self.list_files(key):
            yield relpath, folder / relpath

    def get_tree(self, key: str, dest: Path) -> None:
        shutil.copytree(self._dir(key), dest, dirs_exist_ok=True)

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


def open_store(setting: str | os.PathLike) -> ArtifactStore:
    """The store ACCRETE_ARTIFACTS names: `s3://bucket/prefix`, or a local folder."""
    text = str(setting)
    if text.startswith("s3://"):
        raise NotImplementedError("the S3 artifact store is not built yet")
    return LocalStore(text)
