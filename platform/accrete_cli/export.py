"""`accrete export VERSION DIR [--adapter]`: a version as a Hugging Face folder on this machine.

The merged model (config, safetensors, tokenizer, accrete.json: `AutoModelForCausalLM.from_pretrained(DIR)`
loads it), or with --adapter the LoRA adapter alone and accrete.json (`PeftModel.from_pretrained(parent,
DIR)`). The archive is unpacked as it arrives, never held whole, and every file is checked against the
sha256 of the version's manifest (GET /versions/N/manifest) — independently of the server, which checked
them before sending. A file that does not match, one the manifest does not list, or one it lists that never
came: everything written is deleted and the command exits 1 naming the file."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from accrete_cli.client import Api, UsageError

CHUNK = 1 << 20


class ExportMismatch(Exception):
    """What arrived is not what the manifest lists (the message names the file): exit 1."""


def export(api: Api, args) -> int:
    part = "adapter" if args.adapter else "model"
    target = Path(args.dir)
    _check_target(target, force=args.force)
    manifest = api.export_manifest(args.version, part)
    expected = {entry["path"]: entry for entry in manifest["files"]}
    made = _Written(target)
    try:
        for name in expected:
            _inside(name, args.version)
        _unpack(api.export(args.version, part), expected, made, args.version, manifest["total_bytes"], part)
    except ExportMismatch as exc:
        made.remove()
        print(f"error: {exc} Nothing was kept in {target}.", file=sys.stderr)
        return 1
    except BaseException:  # a broken stream, an interrupt: no half-written folder is left looking complete
        made.remove()
        raise
    total = sum(entry["size"] for entry in expected.values())
    print(f"Exported v{args.version} ({'the LoRA adapter' if part == 'adapter' else 'the merged model'}) to "
          f"{target}: {len(expected)} files, {_megabytes(total)}; every sha256 matches the manifest.")
    print(f"Load it with PeftModel.from_pretrained(<v{args.version}'s parent>, {str(target)!r})" if part == "adapter"
          else f"Load it with AutoModelForCausalLM.from_pretrained({str(target)!r})")
    return 0


def _unpack(chunks: Iterator[bytes], expected: dict, made: _Written, number: int, total: int, part: str) -> None:
    seen: set[str] = set()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(highlight=False)) as progress, \
            tarfile.open(fileobj=_Reader(chunks), mode="r|") as archive:
        bar = progress.add_task(f"v{number} {part}", total=total)
        for member in archive:
            entry = expected.get(member.name)
            if entry is None or not member.isfile() or member.name in seen:
                raise ExportMismatch(f"{member.name} is in the archive of v{number} but not in its manifest.")
            source = archive.extractfile(member)
            digest = hashlib.sha256()
            with made.open(member.name) as out:
                for chunk in iter(partial(source.read, CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    progress.advance(bar, len(chunk))
            if digest.hexdigest() != entry["sha256"]:
                raise ExportMismatch(f"{member.name} arrived with sha256 {digest.hexdigest()[:12]}…, not the "
                                     f"{entry['sha256'][:12]}… the manifest of v{number} lists: it was damaged on "
                                     "its way (or changed on the server). Run the export again.")
            seen.add(member.name)
    absent = sorted(set(expected) - seen)
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise ExportMismatch(f"{absent[0]}{more} is in the manifest of v{number} but never arrived: the archive "
                             "ended early. Run the export again.")


def _check_target(target: Path, *, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a folder: name a new or empty folder.")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise UsageError(f"{target} is not empty: export into a new or empty folder, or pass --force to write "
                         "over the files it has.")


def _inside(name: str, number: int) -> None:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ExportMismatch(f"{name!r} in the manifest of v{number} is not a path inside the folder: refused.")


class _Written:
    """The files and folders this export made under `root`, so that a failed one removes exactly those."""

    def __init__(self, root: Path):
        self.root, self.files, self.folders = root, [], []

    def open(self, name: str):
        path = self.root.joinpath(*PurePosixPath(name).parts)
        missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            self.folders.append(folder)
        self.files.append(path)
        return path.open("wb")

    def remove(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)
        for folder in reversed(self.folders):
            shutil.rmtree(folder, ignore_errors=True)


class _Reader:
    """The stream of chunks as the file object tarfile reads from (short reads are fine: it asks again)."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.current, self.at = chunks, b"", 0

    def read(self, size: int = -1) -> bytes:
        while self.at >= len(self.current):
            self.current, self.at = next(self.chunks, None), 0
            if self.current is None:
                self.current = b""
                return b""
        end = len(self.current) if size < 0 else self.at + size
        piece = self.current[self.at:end]
        self.at += len(piece)
        return piece


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
