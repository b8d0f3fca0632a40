"""Model versions: the state machine, promotion along the single lineage, rollback."""

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import audit_record
from registry.errors import TransitionError
from registry.models import BaseModel, ModelVersion
from teams.permissions import is_platform_admin

S = ModelVersion.Status

ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.CANDIDATE: {S.EVALUATING, S.FAILED, S.STALE},
    S.EVALUATING: {S.AWAITING_APPROVAL, S.BLOCKED, S.FAILED, S.STALE},
    S.AWAITING_APPROVAL: {S.PRODUCTION, S.REJECTED, S.STALE},
    S.PRODUCTION: {S.RETIRED},
    S.RETIRED: {S.PRODUCTION},
    S.FAILED: {S.EVALUATING},
    S.BLOCKED: set(),
    S.REJECTED: set(),
    S.STALE: set(),
}


def _team_of(version: ModelVersion):
    return version.skill.team if version.skill_id else None


def _next_number() -> int:
    return (ModelVersion.objects.aggregate(n=Max("number"))["n"] or 0) + 1


def version_transition(*, version: ModelVersion, to: str, actor=None, data: dict | None = None) -> ModelVersion:
    """Move a version from its current state to `to`, compare-and-set: a concurrent change wins once."""
    old = version.status
    if to not in ALLOWED_TRANSITIONS[S(old)]:
        raise TransitionError(
            f"Version v{version.number} is {S(old).label.lower()}; it cannot become {S(to).label.lower()}."
        )
    with transaction.atomic():
        changed = ModelVersion.objects.filter(pk=version.pk, status=old).update(status=to)
        if changed != 1:
            version.refresh_from_db()
            raise TransitionError(
                f"Version v{version.number} changed to {version.status} meanwhile; reload and try again."
            )
        version.status = to
        audit_record(actor=actor, action=f"version.{to}", obj=version, team=_team_of(version),
                     data={"from": old, "to": to, **(data or {})})
    return version


def production_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=S.PRODUCTION).select_related("skill", "base_model", "promoted_by").first()


@transaction.atomic
def version_register_base(*, base_model: BaseModel, actor=None) -> ModelVersion:
    """The root of a lineage: the imported base model itself. It becomes production when there is none."""
    status = S.RETIRED if production_version() else S.PRODUCTION
    version = ModelVersion.objects.create(
        number=_next_number(), base_model=base_model, status=status, artifact_path=base_model.artifact_path,
        checksums={"tree": base_model.sha256}, promoted_at=timezone.now() if status == S.PRODUCTION else None,
        promoted_by=actor,
    )
    audit_record(actor=actor, action="version.registered_base", obj=version,
                 data={"base_model": base_model.name, "status": status})
    return version


def version_create_candidate(*, job, artifact_path: str, adapter_path: str, checksums: dict, metrics: dict) -> ModelVersion:
    """A candidate from a finished training job. Its parent is, by construction, the version the job
    started from; nothing else may set it."""
    if job.parent_version_id is None:
        raise TransitionError(f"Training job {job.pk} never started from a version; it cannot produce a candidate.")
    if job.candidate_id is not None:
        raise TransitionError(f"Training job {job.pk} already produced v{job.candidate.number}; a job yields one version.")
    for attempt in range(3):
        try:
            with transaction.atomic():
                version = ModelVersion.objects.create(
                    number=_next_number(), base_model=job.parent_version.base_model, parent=job.parent_version,
                    skill=job.skill, status=S.CANDIDATE, artifact_path=artifact_path, adapter_path=adapter_path,
                    checksums=checksums, metrics=metrics,
                )
                job.candidate = version  # the job's side of the link (unique: one version per job)
                job.save(update_fields=["candidate"])
                audit_record(actor=None, action="version.candidate", obj=version, team=job.skill.team,
                             data={"job": job.pk, "parent": job.parent_version.number, "method": job.method})
                return version
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def require_awaiting_approval(version: ModelVersion) -> None:
    if version.status != S.AWAITING_APPROVAL:
        raise TransitionError(
            f"Version v{version.number} is {S(version.status).label.lower()}; only a version awaiting "
            "approval (it passed the gate) can be promoted."
        )


def version_promote(*, version: ModelVersion, actor=None) -> ModelVersion:
    """Make an approved candidate the production version: exactly one production version, always.

    Serialised by the database: the current production row is locked, and the candidate must be a
    child of it; a candidate whose parent is no longer production is stale and must be retrained.
    """
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(status=S.PRODUCTION).first()
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        require_awaiting_approval(version)
        stale = current is None or version.parent_id != current.pk
        if stale:
            # Recorded, then refused outside the block so the stale mark is kept.
            version_transition(version=version, to=S.STALE, actor=actor,
                               data={"reason": "production moved before promotion"})
        else:
            version_transition(version=current, to=S.RETIRED, actor=actor, data={"replaced_by": version.number})
            version_transition(version=version, to=S.PRODUCTION, actor=actor, data={"replaces": current.number})
            ModelVersion.objects.filter(pk=version.pk).update(promoted_at=timezone.now(), promoted_by=actor)
            version.refresh_from_db()
            _mark_siblings_stale(old_production=current, actor=actor)
    if stale:
        raise TransitionError(
            f"Version v{version.number} was trained from v{version.parent.number if version.parent else '?'}, "
            f"but production is now {current or 'none'}: retrain it on the new production version."
        )
    return version


def _mark_siblings_stale(*, old_production: ModelVersion, actor) -> None:
    live = [S.CANDIDATE, S.EVALUATING, S.AWAITING_APPROVAL]
    for sibling in ModelVersion.objects.filter(parent=old_production, status__in=live):
        try:
            version_transition(version=sibling, to=S.STALE, actor=actor,
                               data={"reason": "production moved; retrain on the new production"})
        except TransitionError:
            # Its gate moved it meanwhile; a gate or an approval that sees production moved marks it stale.
            continue


def version_rollback(*, version: ModelVersion, actor) -> ModelVersion:
    """An admin puts an earlier production version back. Audited like any promotion."""
    if actor is not None and not is_platform_admin(actor):
        raise TransitionError("Only a platform admin may roll production back.")
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(status=S.PRODUCTION).first()
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status != S.RETIRED or version.promoted_at is None:
            raise TransitionError(
                f"Version v{version.number} is {S(version.status).label.lower()}; only a retired version "
                "(one that was in production before) can be rolled back to."
            )
        if current is not None:
            version_transition(version=current, to=S.RETIRED, actor=actor, data={"rollback_to": version.number})
            _mark_siblings_stale(old_production=current, actor=actor)
        version_transition(version=version, to=S.PRODUCTION, actor=actor, data={"rollback": True})
        ModelVersion.objects.filter(pk=version.pk).update(promoted_at=timezone.now(), promoted_by=actor)
        version.refresh_from_db()
    return version

