"""A version as a Hugging Face folder: `GET /versions/{n}/export?part=model|adapter` streams it as a .tar,
`GET /versions/{n}/manifest?part=…` lists its files with their sizes and sha256 (what `accrete export`
checks every file it writes against).

part=model: every file of the version but its adapter/ — merged safetensors, config, tokenizer,
accrete.json —, a folder `AutoModelForCausalLM.from_pretrained` loads. part=adapter: the LoRA adapter alone
(the files of adapter/, at the archive's root: a folder `PeftModel.from_pretrained` loads) and accrete.json.
An imported base version has one checksum for its whole tree: its export checks that, and it has no adapter.

Why the checks run in this order: once the 200 and its headers are out, an error can no longer be a problem
document, so every file is read and hashed against the checksum the registry recorded *before* the first
byte is sent. A mismatch answers 409 `artifact-tampered` naming the file — the request is right, the stored
version conflicts with its own record; a 5xx would tell clients (the CLI's `retrying`) to try again, which
cannot help. The stream then hashes each file again as it sends it and holds back each file's last chunk
until that hash matches: a file changed after the check is cut off before its end, the connection drops
short of Content-Length, and no client is left holding a complete archive that is silently corrupt. The
price is reading every byte twice (the second read is mostly the page cache's)."""

from __future__ import annotations

import hashlib
import logging
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from django.conf import settings
from django.http import StreamingHttpResponse
from ninja import Router

from api.problems import Problem
from api.routes.versions import version_or_404
from audit.services import audit_record
from registry.models import ModelVersion
from workers.engine.contract.storage import ArtifactMissing, ArtifactTampered, open_store

router = Router(tags=["versions"])
log = logging.getLogger(__name__)

Part = Literal["model", "adapter"]
ADAPTER = "adapter/"  # the adapter's files, relative to the version's key (as the checksums name them)
MANIFEST = "accrete.json"
CHUNK = 1 << 20
BLOCK, RECORD = tarfile.BLOCKSIZE, tarfile.RECORDSIZE


@dataclass(frozen=True)
class ExportFile:
    name: str  # its path in the archive, i.e. in the exported folder
    stored: str  # its path under the version's key in the store
    sha256: str
    size: int


@router.get("/versions/{number}/manifest", summary="The files an export of the version holds, with their sizes "
                                                   "and sha256 (part=model: the merged model; part=adapter: the "
                                                   "LoRA adapter and accrete.json)")
def versions_manifest(request, number: int, part: Part = "model") -> dict:
    version = version_or_404(request, number)
    files = export_plan(version, part, verify=False)
    return {"version": version.number, "part": part, "archive": _archive_name(version, part),
            "total_bytes": sum(f.size for f in files),
            "files": [{"path": f.name, "size": f.size, "sha256": f.sha256} for f in files]}


@router.get("/versions/{number}/export", summary="The version as a Hugging Face folder in a streamed .tar "
                                                 "(every file checked against its recorded sha256 first)",
            openapi_extra={"responses": {200: {"description": "A tar archive: the folder's files, paths relative "
                                               "to it", "content": {"application/x-tar": {}}}}})
def versions_export(request, number: int, part: Part = "model"):
    version = version_or_404(request, number)
    files = export_plan(version, part, verify=True)
    mtime = int(version.created_at.timestamp())
    headers = [_tar_header(f, mtime) for f in files]
    length = sum(len(h) + f.size + _padding(f.size) for h, f in zip(headers, files, strict=True))
    end = _end_of_archive(length)
    audit_record(actor=request.user, action="version.exported", obj=version,
                 team=version.skill.team if version.skill_id else None,
                 data={"part": part, "files": len(files), "bytes": length + len(end)})
    response = StreamingHttpResponse(_archive(version, files, headers, end), content_type="application/x-tar")
    response["Content-Length"] = str(length + len(end))
    response["Content-Disposition"] = f'attachment; filename="{_archive_name(version, part)}"'
    return response


def export_plan(version: ModelVersion, part: str, *, verify: bool) -> list[ExportFile]:
    """The files of `version`'s export, in archive order. With `verify`, every one is read and must match
    its recorded sha256 (a Problem otherwise: 409 changed, 410 gone); without, their sizes are the store's
    and their sha256 the recorded ones — except an imported base version's, which are always read: its
    record is one checksum over the whole tree."""
    if part == "model" and not version.artifact_path and version.adapter_path:
        raise _weights_deleted(version)  # the retention policy empties artifact_path when it deletes them
    store, key = open_store(settings.ACCRETE_ARTIFACTS), _folder(version)
    try:
        sizes = store.file_sizes(key) if key else {}
    except ArtifactMissing:
        sizes = {}
    if "tree" in (version.checksums or {}):
        return _base_plan(version, part, store, sizes)
    recorded = _recorded(version, part)
    missing = sorted(path for path in recorded if path not in sizes)
    if missing:
        raise _gone(version, part, missing, set(sizes))
    files, path = [], ""
    try:
        for path, (name, expected) in sorted(recorded.items(), key=lambda item: item[1][0]):
            size = sizes[path]
            if verify:
                actual, size = _measure(store, key, path)
                if actual != expected:
                    raise ArtifactTampered(
                        f"{path} of {version} has sha256 {actual[:12]}…, not the {expected[:12]}… recorded when it "
                        "was written: the file was changed or damaged in the artifact store, so it is not exported. "
                        "Restore it from a backup, or train the version again.")
            files.append(ExportFile(name=name, stored=path, sha256=expected, size=size))
    except ArtifactTampered as exc:
        log.error("export of %s refused: %s", version, exc)
        raise Problem(409, str(exc), code="artifact-tampered") from None
    except FileNotFoundError:  # deleted between the listing and the read
        raise _gone(version, part, [path], set(sizes) - {path}) from None
    return files


def _folder(version: ModelVersion) -> str:
    """The version's key in the store: its artifact_path — or, once the retention policy deleted the merged
    weights (and emptied artifact_path), the folder its adapter and accrete.json stay in."""
    if version.artifact_path:
        return version.artifact_path
    return PurePosixPath(version.adapter_path).parent.as_posix() if version.adapter_path else ""


def _recorded(version: ModelVersion, part: str) -> dict[str, tuple[str, str]]:
    """{path in the store: (path in the archive, recorded sha256)} for `part` of a trained version."""
    checksums = version.checksums or {}
    if not checksums:
        raise Problem(409, f"{version} has no recorded checksums, so its files cannot be verified and are not "
                      "exported.", code="refused")
    if part == "model":
        return {path: (path, sha) for path, sha in checksums.items() if not path.startswith(ADAPTER)}
    adapter = {path: (path.removeprefix(ADAPTER), sha) for path, sha in checksums.items() if path.startswith(ADAPTER)}
    if not adapter:
        raise Problem(409, f"{version} has no adapter recorded: export part=model.", code="refused")
    if MANIFEST in checksums:
        adapter[MANIFEST] = (MANIFEST, checksums[MANIFEST])
    return adapter


def _base_plan(version: ModelVersion, part: str, store, sizes: dict[str, int]) -> list[ExportFile]:
    """An imported base version: every stored file, the whole tree checked against its import checksum (the
    same sum as storage.tree_sha256: sorted `relpath\\0sha\\n` lines)."""
    if part == "adapter":
        raise Problem(409, f"{version} is an imported base model: it has no adapter. Export part=model.",
                      code="refused")
    if not sizes:
        raise _gone(version, part, [version.artifact_path or "its folder"], set())
    files, digest, path = [], hashlib.sha256(), ""
    try:
        for path in sorted(sizes, key=PurePosixPath):
            sha, size = _measure(store, version.artifact_path, path)
            digest.update(f"{path}\0{sha}\n".encode())
            files.append(ExportFile(name=path, stored=path, sha256=sha, size=size))
    except FileNotFoundError:
        raise _gone(version, part, [path], set()) from None
    except ArtifactTampered as exc:
        raise Problem(409, str(exc), code="artifact-tampered") from None
    expected = version.checksums["tree"]
    if digest.hexdigest() != expected:
        log.error("export of %s refused: its tree does not match its import checksum", version)
        raise Problem(409, f"The files of {version} (an imported base model, under {version.artifact_path}) do not "
                      f"match the checksum recorded at import (tree sha256 {digest.hexdigest()[:12]}… ≠ "
                      f"{expected[:12]}…): a file was changed, added or removed. Import the model again.",
                      code="artifact-tampered")
    return sorted(files, key=lambda f: f.name)


def _gone(version: ModelVersion, part: str, missing: list[str], stored: set[str]) -> Problem:
    named = missing[0] + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    if part == "model" and any(path.startswith(ADAPTER) for path in stored):
        return _weights_deleted(version, named)
    return Problem(410, f"{named} of {version} is no longer in the artifact store: it cannot be exported.",
                   code="artifact-deleted")


def _weights_deleted(version: ModelVersion, missing: str = "") -> Problem:
    gone = f"are no longer in the artifact store ({missing})" if missing else "were deleted"
    return Problem(410, f"The merged weights of {version} {gone}: the retention policy deletes them for blocked, "
                   "rejected, stale and failed candidates after ACCRETE_RETENTION_DAYS days and keeps only the "
                   f"adapter. Export the adapter with part=adapter (accrete export {version.number} DIR --adapter).",
                   code="artifact-deleted")


def _measure(store, key: str, path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with store.open_file(key, path) as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _archive(version: ModelVersion, files: list[ExportFile], headers: list[bytes], end: bytes) -> Iterator[bytes]:
    store = open_store(settings.ACCRETE_ARTIFACTS)
    for file, header in zip(files, headers, strict=True):
        yield header
        digest, sent, held = hashlib.sha256(), 0, b""
        with store.open_file(_folder(version), file.stored) as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
                sent += len(chunk)
                if sent > file.size:
                    break
                if held:
                    yield held
                held = chunk  # the last chunk goes out only once the whole file is known to match
        if sent != file.size or digest.hexdigest() != file.sha256:
            log.error("export of %s cut off: %s changed while it was being sent", version, file.stored)
            raise ArtifactTampered(f"{file.stored} of {version} changed while it was being exported; the archive "
                                   "was cut off before its end.")
        yield held
        yield b"\0" * _padding(file.size)
    yield end


def _tar_header(file: ExportFile, mtime: int) -> bytes:
    info = tarfile.TarInfo(file.name)
    info.size, info.mtime, info.mode = file.size, mtime, 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> int:
    return -size % BLOCK


def _end_of_archive(length: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record, as tarfile writes them."""
    return b"\0" * (2 * BLOCK + (-(length + 2 * BLOCK) % RECORD))


def _archive_name(version: ModelVersion, part: str) -> str:
    return f"v{version.number}-{part}.tar"
