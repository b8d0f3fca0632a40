"""Promotion requests and approvals: four eyes, and only for a candidate that passed the gate."""

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from registry.errors import SelfApprovalError, TransitionError
from registry.models import Approval, ModelVersion, PromotionRequest
from registry.services.versions import (
    _lock_production,
    _transition,
    stale_reason,
    version_mark_stale,
    version_promote,
)
from teams.models import Role
from teams.permissions import is_machine, require_role, same_person

S = ModelVersion.Status


def promotion_request_create(*, version: ModelVersion, actor, comment: str = "") -> PromotionRequest:
    """A contributor of the skill's team puts a candidate that passed the gate up for approval."""
    if version.skill_id is None:
        raise TransitionError(f"v{version.number} is a base version: it is not promoted through approvals.")
    if actor is None:
        raise TransitionError("A promotion request is a person's: name who asks for it.")
    require_role(actor, version.skill.team, Role.CONTRIBUTOR, action=f"ask for the promotion of v{version.number}")
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update(of=("self",))
        version = locked.select_related("skill__team").get(pk=version.pk)
        if version.status != S.AWAITING_APPROVAL:
            raise TransitionError(
                f"v{version.number} is {S(version.status).label.lower()}: only a candidate that passed the gate "
                "can be put up for approval."
            )
        existing = PromotionRequest.objects.filter(version=version, status=PromotionRequest.Status.OPEN).first()
        if existing is not None:
            return existing
        request = PromotionRequest.objects.create(version=version, requested_by=actor, comment=comment)
        audit_record(actor=actor, action="promotion.requested", obj=request, team=version.skill.team,
                     data={"version": version.number})
    return request


def approval_decide(*, request: PromotionRequest, approver, decision: str, comment: str = "") -> Approval:
    """A skill owner (not the requester) approves — promoting the version — or rejects it. Approving a
    candidate whose parent left production marks it stale (closing the request) and is refused."""
    version = request.version
    if approver is None:
        raise SelfApprovalError("An approval is a second person's decision: name the approver (four-eyes rule).")
    require_role(approver, version.skill.team, Role.SKILL_OWNER, action=f"approve v{version.number}")
    if is_machine(approver) and decision == Approval.Decision.APPROVE:
        raise SelfApprovalError(
            f"{approver.get_username()} is a service account: approving a promotion is a person's decision "
            "(four-eyes rule). A skill owner approves it in the browser or with their own token."
        )
    if approver.pk == request.requested_by_id or same_person(approver, request.requested_by):
        raise SelfApprovalError(
            f"{approver.get_username()} requested the promotion of v{version.number} (or made the service account "
            "that did) and cannot also approve it: another skill owner must review it (four-eyes rule)."
        )
    if decision not in Approval.Decision.values:
        raise TransitionError(f"Unknown decision {decision!r}: use approve or reject.")
    stale = None
    with transaction.atomic():
        current = _lock_production()
        request = PromotionRequest.objects.select_for_update().get(pk=request.pk)
        locked = ModelVersion.objects.select_for_update(of=("self",))
        version = locked.select_related("parent", "skill__team").get(pk=request.version_id)
        if request.status != PromotionRequest.Status.OPEN:
            why = f": {request.closed_reason}" if request.closed_reason else ""
            raise TransitionError(f"This request was already {request.get_status_display().lower()}{why}")
        if version.status != S.AWAITING_APPROVAL:
            raise TransitionError(
                f"v{version.number} is {S(version.status).label.lower()}; only a candidate that passed the gate "
                "can be approved."
            )
        if decision == Approval.Decision.APPROVE and stale_reason(version, current):
            stale = version_mark_stale(version=version, actor=approver)  # kept: the refusal is raised below
        else:
            approval = Approval.objects.create(request=request, requester=request.requested_by, approver=approver,
                                               decision=decision, comment=comment)
            new_status = (PromotionRequest.Status.APPROVED if decision == Approval.Decision.APPROVE
                          else PromotionRequest.Status.REJECTED)
            PromotionRequest.objects.filter(pk=request.pk).update(status=new_status, decided_at=timezone.now())
            audit_record(actor=approver, action=f"promotion.{new_status}", obj=request, team=version.skill.team,
                         data={"version": version.number, "comment": comment})
            if decision == Approval.Decision.APPROVE:
                version_promote(version=version, actor=approver)
            else:
                _transition(version=version, to=S.REJECTED, actor=approver, data={"comment": comment},
                            reason=f"rejected by {approver.get_username()}" + (f": {comment}" if comment else ""))
    if stale:
        raise TransitionError(f"{stale} It is stale now; its promotion request is closed.")
    return approval
