"""The retention policy for candidates' merged weights (about 15 GB each at 7B).

A candidate that can never become production — blocked by the gate, rejected, stale (production moved), or
whose gate failed — loses its merged weights ACCRETE_RETENTION_DAYS after it was created. Its LoRA adapter and
accrete.json stay, so it can be rebuilt (merged into its parent again). Never deleted: any version that is or
was production, base models, a version some other version was trained from, a candidate without an adapter
(it could not be rebuilt), and a folder another kept version also points at.

A version whose weights are gone records it the way the registry already says "no merged weights": its
`artifact_path` is emptied (the playground and every load skip such versions; a load names the retention
policy), and the audit log holds when, by whom, and which files ("artifact.deleted")."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from registry.models import BaseModel, ModelVersion
from workers.engine.contract.storage import ArtifactMissing, open_store

S = ModelVersion.Status
# Ends of the line: none of these can become production again. A FAILED gate can be re-run (gate_rerun), so a
# failed candidate keeps its weights.
EXPIRING = (S.BLOCKED, S.REJECTED, S.STALE)
MANIFEST = "accrete.json"


@dataclass(frozen=True)
class RetentionItem:
    """One candidate's merged weights the policy deletes: `files` go, `kept` stay (adapter, manifest)."""

    version: ModelVersion
    key: str
    files: list[str]
    bytes: int
    kept: list[str] = field(default_factory=list)


def _kept(version: ModelVersion, relpath: str) -> bool:
    adapter = PurePosixPath(version.adapter_path)
    folder = PurePosixPath(version.artifact_path)
    inside = adapter.relative_to(folder).as_posix() if adapter.is_relative_to(folder) else None
    return relpath == MANIFEST or (inside is not None and (relpath == inside or relpath.startswith(inside + "/")))


def _overlaps(key: str, others: set[str]) -> bool:
    return any(key == other or key.startswith(other + "/") or other.startswith(key + "/") for other in others)


def retention_plan(*, now: datetime | None = None) -> list[RetentionItem]:
    """The merged weights the policy deletes now, oldest version first (reads the store, changes nothing)."""
    days = settings.ACCRETE_RETENTION_DAYS
    if days == 0:
        return []
    cutoff = (now or timezone.now()) - timedelta(days=days)
    parents = ModelVersion.objects.filter(parent__isnull=False).values("parent_id")
    expired = list(ModelVersion.objects.select_related("skill").filter(
        status__in=EXPIRING, created_at__lt=cutoff, parent__isnull=False, promoted_at__isnull=True,
    ).exclude(artifact_path="").exclude(adapter_path="").exclude(pk__in=parents).order_by("number"))
    # A folder a kept version (or a base model) also points at is never touched, whoever else points there.
    kept_folders = set(ModelVersion.objects.exclude(pk__in=[v.pk for v in expired]).exclude(artifact_path="")
                       .values_list("artifact_path", flat=True))
    kept_folders |= set(BaseModel.objects.values_list("artifact_path", flat=True))
    store = open_store(settings.ACCRETE_ARTIFACTS)
    plan = []
    for version in expired:
        if _overlaps(version.artifact_path, kept_folders):
            continue
        try:
            sizes = store.file_sizes(version.artifact_path)
        except ArtifactMissing:
            continue  # nothing in the store to delete (and no adapter there to keep)
        kept = [relpath for relpath in sizes if _kept(version, relpath)]
        adapter = [r for r in version.checksums if _kept(version, r) and r != MANIFEST]
        if not adapter or any(r not in sizes for r in adapter):
            continue  # the adapter the candidate would be rebuilt from is not all there: keep everything
        files = [relpath for relpath in sizes if not _kept(version, relpath)]
        plan.append(RetentionItem(version=version, key=version.artifact_path, files=files,
                                  bytes=sum(sizes[relpath] for relpath in files),
                                  kept=kept))
    return plan


def retention_apply(*, actor=None, now: datetime | None = None, dry_run: bool = False) -> list[RetentionItem]:
    """Delete what retention_plan lists; returns what was deleted (with `dry_run`, what would be).

    Each version is one transaction: a compare-and-set empties its artifact_path (only while it is still in
    the status the plan saw), the deletion is audited, then the files go; a store error rolls the record
    back, and the next run deletes the rest."""
    plan = retention_plan(now=now)
    if dry_run:
        return plan
    store = open_store(settings.ACCRETE_ARTIFACTS)
    done = []
    for item in plan:
        version = item.version
        with transaction.atomic():
            claimed = ModelVersion.objects.filter(pk=version.pk, status=version.status,
                                                  artifact_path=item.key).update(artifact_path="")
            if claimed != 1:
                continue
            audit_record(actor=actor, action="artifact.deleted", obj=version,
                         team=version.skill.team if version.skill_id else None,
                         data={"version": version.number, "status": version.status, "artifact_path": item.key,
                               "files": item.files, "bytes": item.bytes, "kept": item.kept,
                               "retention_days": settings.ACCRETE_RETENTION_DAYS})
            store.delete(item.key, item.files)
        done.append(item)
    return done
