"""Model versions: the state machine, promotion along the single lineage, rollback.

The rules live where the state changes (ARCHITECTURE, the flow, rule 7). `_transition` is the one writer
of a version's status, private to registry.services, and it refuses what the rules forbid whoever calls
it: a version awaits approval only with a passing gate result against its parent while that parent is
production; it becomes production only through an approved promotion request (four eyes) or a platform
admin's rollback to a version that was production before. `stale_reason` is the one staleness rule. A
version that drops out of the running (stale, blocked, rejected) closes its open promotion requests,
with the reason, so no approver is left deciding something that can no longer be promoted."""

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import audit_record
from config import dispatch
from registry.errors import TransitionError
from registry.models import Approval, BaseModel, GateResult, ModelVersion, PromotionRequest
from teams.models import Role
from teams.permissions import has_role, is_platform_admin

S = ModelVersion.Status

ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.CANDIDATE: {S.EVALUATING, S.FAILED, S.STALE},
    S.EVALUATING: {S.AWAITING_APPROVAL, S.BLOCKED, S.FAILED, S.STALE},
    S.AWAITING_APPROVAL: {S.PRODUCTION, S.REJECTED, S.STALE},
    S.PRODUCTION: {S.RETIRED},
    S.RETIRED: {S.PRODUCTION},
    S.FAILED: {S.EVALUATING, S.STALE},  # a re-run gate, or production moved while it lay failed
    S.BLOCKED: set(),
    S.REJECTED: set(),
    S.STALE: set(),
}
# States a version leaves the running in: its open promotion requests are closed.
OUT_OF_THE_RUNNING = {S.STALE, S.BLOCKED, S.REJECTED}
# States a candidate of the old production can still be in when production moves: all become stale.
LIVE = [S.CANDIDATE, S.EVALUATING, S.AWAITING_APPROVAL, S.FAILED]


def _team_of(version: ModelVersion):
    return version.skill.team if version.skill_id else None


def _next_number() -> int:
    return (ModelVersion.objects.aggregate(n=Max("number"))["n"] or 0) + 1


def _label(status: str) -> str:
    return S(status).label.lower()


def production_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=S.PRODUCTION).select_related("skill", "base_model", "promoted_by").first()


def stale_reason(version: ModelVersion, current: ModelVersion | None) -> str | None:
    """The one staleness rule: a candidate is gated against, and may only replace, the version it was trained
    from. None while its parent is the production version `current`; else why it is stale."""
    if version.parent_id is None or (current is not None and current.pk == version.parent_id):
        return None
    return (f"v{version.number} was trained from v{version.parent.number}, but production is now "
            f"{f'v{current.number}' if current else 'none'}: retrain it on the new production version.")


def _approval_of(version: ModelVersion) -> Approval | None:
    """The approval that authorises promoting `version`: an approve decision on its approved request."""
    return (Approval.objects.filter(request__version=version, request__status=PromotionRequest.Status.APPROVED,
                                    decision=Approval.Decision.APPROVE)
            .select_related("request", "approver").order_by("-pk").first())


def _refusal(version: ModelVersion, to: str, *, actor, rollback: bool) -> str | None:
    """What forbids moving `version` to `to` beyond the table (None: nothing does)."""
    if to == S.STALE and stale_reason(version, production_version()) is None:
        return (f"v{version.number} was trained from the production version: it is not stale (only a "
                "candidate whose parent left production is).")
    if to == S.AWAITING_APPROVAL:
        gate = GateResult.objects.filter(candidate=version).first()
        if gate is None or gate.verdict != GateResult.Verdict.PASS:
            return (f"v{version.number} has no passing gate result: only a candidate the gate passed can await "
                    "approval.")
        if gate.baseline_id != version.parent_id:
            return (f"v{version.number} was gated against v{gate.baseline.number}, not against its parent: "
                    "gate it again.")
        return stale_reason(version, production_version())
    if to == S.PRODUCTION and rollback:
        if not is_platform_admin(actor):
            return "Only a platform admin may roll production back."
        if version.promoted_at is None:
            return (f"v{version.number} was never production: a rollback only puts back a version that was "
                    "production before.")
        return None
    if to == S.PRODUCTION:
        approval = _approval_of(version)
        if approval is None:
            return (f"v{version.number} has no approved promotion request: its requester asks for promotion, "
                    "then another skill owner approves it (four-eyes rule).")
        if approval.approver_id == approval.request.requested_by_id:
            return f"v{version.number} was approved by its own requester: another skill owner must approve it."
        if version.skill_id is None or not has_role(approval.approver, version.skill.team, Role.SKILL_OWNER):
            return f"{approval.approver} is not a skill owner of the team of v{version.number}."
        return stale_reason(version, production_version())
    return None


def _transition(*, version: ModelVersion, to: str, actor=None, reason: str = "", data: dict | None = None,
                rollback: bool = False, fields: dict | None = None) -> ModelVersion:
    """Move a version from its current state to `to`, compare-and-set: a concurrent change wins once. The
    only writer of a version's status; `fields` are written in the same update."""
    old = version.status
    if to not in ALLOWED_TRANSITIONS[S(old)]:
        raise TransitionError(f"Version v{version.number} is {_label(old)}; it cannot become {_label(to)}.")
    refusal = _refusal(version, to, actor=actor, rollback=rollback)
    if refusal is not None:
        raise TransitionError(refusal)
    with transaction.atomic():
        if to == S.PRODUCTION:
            # Exactly one production version: the one it replaces retires in the same transaction.
            current = _lock_production()
            if current is not None:
                _transition(version=current, to=S.RETIRED, actor=actor, data={"replaced_by": version.number})
        changed = ModelVersion.objects.filter(pk=version.pk, status=old).update(status=to, **(fields or {}))
        if changed != 1:
            version.refresh_from_db()
            raise TransitionError(
                f"Version v{version.number} changed to {version.status} meanwhile; reload and try again."
            )
        version.status = to
        for name, value in (fields or {}).items():
            setattr(version, name, value)
        audit_record(actor=actor, action=f"version.{to}", obj=version, team=_team_of(version),
                     data={"version": version.number, "from": old, "to": to, **({"reason": reason} if reason else {}),
                           **(data or {})})
        if to == S.PRODUCTION and settings.ACCRETE_PRODUCTION_EXPORT_DIR:
            # vLLM serves an exported folder, not the store: an eval worker writes it once this is committed.
            transaction.on_commit(lambda pk=version.pk: dispatch.send(dispatch.EXPORT_PRODUCTION, pk))
        if to in OUT_OF_THE_RUNNING:
            _close_open_requests(version=version, reason=reason or f"v{version.number} is {_label(to)}.",
                                 actor=actor)
    return version


def _close_open_requests(*, version: ModelVersion, reason: str, actor) -> None:
    for request in PromotionRequest.objects.filter(version=version, status=PromotionRequest.Status.OPEN):
        closed = PromotionRequest.objects.filter(pk=request.pk, status=PromotionRequest.Status.OPEN).update(
            status=PromotionRequest.Status.CLOSED, closed_reason=reason, decided_at=timezone.now())
        if closed == 1:
            audit_record(actor=actor, action="promotion.closed", obj=request, team=_team_of(version),
                         data={"version": version.number, "reason": reason})


def version_mark_stale(*, version: ModelVersion, actor=None) -> str | None:
    """Apply the staleness rule: mark `version` stale (it can never replace production; retrain it) when its
    parent is no longer production. Returns why, or None when it is still current and nothing changed."""
    reason = stale_reason(version, production_version())
    if reason is not None:
        _transition(version=version, to=S.STALE, actor=actor, reason=reason)
    return reason


@transaction.atomic
def version_register_base(*, base_model: BaseModel, actor=None) -> ModelVersion:
    """The root of a lineage: the imported base model itself. It becomes production when there is none
    (the first import); a later import is registered retired and never production by itself."""
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
            f"Version v{version.number} is {_label(version.status)}; only a version awaiting "
            "approval (it passed the gate) can be promoted."
        )


def _lock_production() -> ModelVersion | None:
    """The production row, locked until the transaction ends: promotions and rollbacks queue up behind it."""
    return ModelVersion.objects.select_for_update().filter(status=S.PRODUCTION).first()


def version_promote(*, version: ModelVersion, actor=None) -> ModelVersion:
    """Make an approved candidate the production version: exactly one production version, always.

    Only with an approved promotion request (approval_decide calls this in the same transaction); the
    current production row is locked, and a candidate whose parent is no longer production is refused
    (the approval marks it stale before it gets here)."""
    with transaction.atomic():
        current = _lock_production()
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        require_awaiting_approval(version)
        approval = _approval_of(version)
        if current is None or stale_reason(version, current):
            raise TransitionError(stale_reason(version, current) or "There is no production version to replace.")
        _transition(version=version, to=S.PRODUCTION, actor=actor,
                    data={"replaces": current.number, "request": approval.request_id if approval else None},
                    fields={"promoted_at": timezone.now(), "promoted_by": approval.approver if approval else actor})
        _mark_children_stale(old_production=current, actor=actor)
    version.refresh_from_db()
    return version


def _mark_children_stale(*, old_production: ModelVersion, actor) -> None:
    for child in ModelVersion.objects.filter(parent=old_production, status__in=LIVE).select_related("parent"):
        try:
            version_mark_stale(version=child, actor=actor)
        except TransitionError:
            # Its gate moved it meanwhile; a gate or an approval that sees production moved marks it stale.
            continue


def version_rollback(*, version: ModelVersion, actor) -> ModelVersion:
    """A platform admin puts back a version that was production before. Audited like any promotion."""
    if not is_platform_admin(actor):
        raise TransitionError("Only a platform admin may roll production back.")
    with transaction.atomic():
        current = _lock_production()
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status != S.RETIRED or version.promoted_at is None:
            raise TransitionError(
                f"Version v{version.number} is {_label(version.status)}"
                + (" and was never production" if version.promoted_at is None else "")
                + "; only a retired version (one that was in production before) can be rolled back to."
            )
        _transition(version=version, to=S.PRODUCTION, actor=actor, rollback=True, data={"rollback": True},
                    fields={"promoted_at": timezone.now(), "promoted_by": actor})
        if current is not None:
            _mark_children_stale(old_production=current, actor=actor)
    version.refresh_from_db()
    return version
