"""Uploaded files between the browser's two steps: validated (the preview) and saved (the confirmation).

A pending upload is one or two files under VAR_DIR/uploads named by a random token — `<token>.upload` and,
with an explicit eval file, `<token>.eval` — the token kept in the user's session. The client's file name is
never part of a path. The files are deleted when the upload is saved, cancelled or refused; when the user
walks away instead, `pending_uploads_expire` (run by the beat scheduler) deletes them after
ACCRETE_UPLOAD_TTL_S. A saved set remembers its token, so a second confirmation finds it.
"""

import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from skills.models import DemonstrationSet

SUFFIXES = ("upload", "eval")
_TOKEN = re.compile(r"[0-9a-f]{32}")
_PENDING_FILE = re.compile(r"[0-9a-f]{32}\.(?:upload|eval)")


def uploads_dir() -> Path:
    path = Path(settings.VAR_DIR) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pending_upload_token() -> str:
    return uuid.uuid4().hex


def is_upload_token(token) -> bool:
    return isinstance(token, str) and _TOKEN.fullmatch(token) is not None


def pending_upload_paths(token: str) -> tuple[Path, Path]:
    """(the upload, its eval file) of `token`. Refuses (ValueError) anything that is not a token
    `pending_upload_token` made, so a forged one is never a path."""
    if not is_upload_token(token):
        raise ValueError("not an upload token")
    folder = uploads_dir()
    return folder / f"{token}.upload", folder / f"{token}.eval"


def pending_upload_store(chunks: Iterable[bytes], *, token: str, suffix: str) -> Path:
    """Write an uploaded file (its chunks) as the `suffix` ("upload" or "eval") file of `token`."""
    if suffix not in SUFFIXES:
        raise ValueError(f"suffix must be one of {SUFFIXES}, got {suffix!r}")
    path = pending_upload_paths(token)[SUFFIXES.index(suffix)]
    with open(path, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    return path


def pending_upload_discard(token: str) -> None:
    """Delete the files of `token`, whichever exist."""
    if is_upload_token(token):
        for path in pending_upload_paths(token):
            path.unlink(missing_ok=True)


def pending_uploads_expire(now: datetime | None = None) -> int:
    """Delete pending upload files last written more than ACCRETE_UPLOAD_TTL_S seconds before `now`, and
    return how many were deleted. Only files this module names are touched. An upload confirmed after its
    files went is told to upload again: nothing half-saved."""
    ttl = settings.ACCRETE_UPLOAD_TTL_S
    cutoff = (now or timezone.now()).timestamp() - ttl
    deleted = 0
    for path in uploads_dir().iterdir():
        if not _PENDING_FILE.fullmatch(path.name):
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:  # saved, cancelled or expired by another process meanwhile
            continue
    return deleted


def demonstration_set_of_upload(token) -> DemonstrationSet | None:
    """The set a pending upload was saved as, if it was: a second confirmation of it finds this."""
    if not is_upload_token(token):
        return None
    return DemonstrationSet.objects.select_related("skill").filter(upload_token=token).first()
