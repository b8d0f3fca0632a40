"""Atomic directory writes and content checksums for model artifacts.

A model version's files are written once and never change. Writers build the whole tree in a hidden
sibling directory (same filesystem, so the final ``os.rename`` is atomic), fsync every file and the
directories, then rename. A crash or an exception leaves either nothing or the complete tree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from workers.engine.contract.storage import file_sha256, tree_sha256


def sha256_tree(path: str | os.PathLike) -> dict[str, str]:
    """Map every regular file under ``path`` (relative POSIX path) to its sha256, sorted by path."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in files}


def tree_checksum(path: str | os.PathLike) -> str:
    """One sha256 for a whole directory: over the sorted ``relpath\0sha\n`` lines of its files."""
    return tree_sha256(path)


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file, then every directory bottom-up, so the rename publishes durable content."""
    root = Path(path)
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(dirpath)


def _fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp sibling directory; on success it becomes ``final_path`` in one rename.

    Refuses to replace an existing ``final_path``: artifacts are immutable, so a second write to the
    same place is a bug in the caller, not something to paper over.
    """
    final = Path(final_path)
    if final.exists():
        raise FileExistsError(f"{final} already exists; artifact directories are written once")
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        yield temp
        fsync_tree(temp)
        os.rename(temp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
