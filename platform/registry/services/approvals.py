"""Promotion requests and approvals: four eyes, and only for a candidate that passed the gate."""

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from registry.errors import SelfApprovalError, TransitionError
from registry.models import Approval, ModelVersion, PromotionRequest
from registry.services.versions import production_version, version_promote, version_transition
from teams.models import Role
from teams.permissions import require_role

S = ModelVersion.Status


def promotion_request_create(*, version: ModelVersion, actor, comment: str = "") -> PromotionRequest:
    """A contributor of the skill's team puts a candidate that passed the gate up for approval."""
    if version.skill_id is None:
        raise TransitionError(f"v{version.number} is a base version: it is not promoted through approvals.")
    require_role(actor, version.skill.team, Role.CONTRIBUTOR, action=f"ask for the promotion of v{version.number}")
    if version.status != S.AWAITING_APPROVAL:
        raise TransitionError(
            f"v{version.number} is {S(version.status).label.lower()}: only a candidate that passed the gate "
            "can be put up for approval."
        )
    with transaction.atomic():
        existing = PromotionRequest.objects.filter(version=version, status=PromotionRequest.Status.OPEN).first()
        if existing is not None:
            return existing
        request = PromotionRequest.objects.create(version=version, requested_by=actor, comment=comment)
        audit_record(actor=actor, action="promotion.requested", obj=request, team=version.skill.team,
                     data={"version": version.number})
    return request


def approval_decide(*, request: PromotionRequest, approver, decision: str, comment: str = "") -> Approval:
    """A skill owner (not the requester) approves — promoting the version — or rejects it."""
    version = request.version
    require_role(approver, version.skill.team, Role.SKILL_OWNER, action=f"approve v{version.number}")
    if approver.pk == request.requested_by_id:
        raise SelfApprovalError(
            f"{approver.get_username()} requested the promotion of v{version.number} and cannot also approve it: "
            "another skill owner must review it (four-eyes rule)."
        )
    current = production_version()
    if decision == "approve" and version.status == S.AWAITING_APPROVAL and (current is None or version.parent_id != current.pk):
        version_transition(version=version, to=S.STALE, actor=approver, data={"reason": "production moved"})
        raise TransitionError(
            f"v{version.number} was trained from v{version.parent.number}, but production is now "
            f"{current or 'none'}: it is stale; retrain the skill on the new production version."
        )
    if decision not in Approval.Decision.values:
        raise TransitionError(f"Unknown decision {decision!r}: use approve or reject.")
    with transaction.atomic():
        request = PromotionRequest.objects.select_for_update().get(pk=request.pk)
        version.refresh_from_db()
        if request.status != PromotionRequest.Status.OPEN:
            raise TransitionError(f"This request was already {request.status}.")
        if version.status != S.AWAITING_APPROVAL:
            raise TransitionError(
                f"v{version.number} is {S(version.status).label.lower()}; only a candidate that passed the gate "
                "can be approved."
            )
        approval = Approval.objects.create(request=request, requester=request.requested_by, approver=approver,
                                           decision=decision, comment=comment)
        new_status = PromotionRequest.Status.APPROVED if decision == "approve" else PromotionRequest.Status.REJECTED
        PromotionRequest.objects.filter(pk=request.pk).update(status=new_status, decided_at=timezone.now())
        audit_record(actor=approver, action=f"promotion.{decision}d", obj=request, team=version.skill.team,
                     data={"version": version.number, "comment": comment})
        if decision == "approve":
            version_promote(version=version, actor=approver)
        else:
            version_transition(version=version, to=S.REJECTED, actor=approver, data={"comment": comment})
    return approval
