"""Model versions, their gate reports, re-running a failed gate, the forgetting matrix, promotion
requests and decisions (four eyes), and production with its manifest."""

from django.db.models import Q
from django.shortcuts import get_object_or_404
from ninja import Query, Router

from api import serialize
from api.paging import PageParams, page_of, paged
from api.problems import Problem
from api.schemas import DecisionIn, PromotionIn, PromotionRequestOut, VersionOut
from registry.models import GateResult, ModelVersion, PromotionRequest
from registry.selectors import (
    forgetting_matrix_for,
    gate_report,
    production_version,
    requests_awaiting,
    versions_visible_to,
)
from registry.services.approvals import approval_decide, promotion_request_create
from registry.services.gates import gate_rerun
from teams.permissions import case_access
from teams.selectors import teams_of

router = Router(tags=["versions"])


def _versions(request):
    return versions_visible_to(request.user).select_related("base_model", "gate", "training_job", "skill__team",
                                                            "parent")


def version_or_404(request, number: int) -> ModelVersion:
    if not case_access(request.user).in_a_team:
        raise Problem(403, "You are in no team yet: ask a platform admin to add you to one.", code="no-team")
    return get_object_or_404(_versions(request), number=number)


@router.get("/versions", response=page_of(VersionOut), summary="Versions I may see, newest first")
def versions_list(request, page: Query[PageParams], status: str | None = None, skill: str | None = None):
    qs = _versions(request).order_by("-number")
    if status:
        qs = qs.filter(status=status)
    if skill:
        qs = qs.filter(skill__slug=skill)
    return paged(qs, serialize.version, page)


@router.get("/versions/{number}", response=VersionOut)
def versions_detail(request, number: int):
    return serialize.version(version_or_404(request, number))


@router.get("/versions/{number}/gate", summary="The gate report: per-suite rows, reasons, remedy, flipped cases "
                                                "(another team's cases as counts only)")
def versions_gate(request, number: int) -> dict:
    version = version_or_404(request, number)
    gate = GateResult.objects.filter(candidate=version).select_related("candidate", "baseline").first()
    if gate is None:
        raise Problem(404, f"v{number} has no gate result yet (it is {version.get_status_display().lower()}).",
                      code="no-gate", status_of_version=version.status)
    return serialize.gate(gate_report(gate, user=request.user))


@router.post("/versions/{number}/gate/rerun", response=VersionOut,
             summary="Re-run a failed gate (skill owners of the skill's team)")
def versions_gate_rerun(request, number: int):
    version = gate_rerun(version=version_or_404(request, number), actor=request.user)
    return serialize.version(_versions(request).get(pk=version.pk))


@router.post("/versions/{number}/promotion-requests", response={201: PromotionRequestOut},
             tags=["promotions"], summary="Ask for the promotion of a candidate that passed the gate")
def versions_request_promotion(request, number: int, payload: PromotionIn):
    version = version_or_404(request, number)
    if version.skill_id is None:
        raise Problem(409, "A base version is not promoted through approvals.", code="refused")
    created = promotion_request_create(version=version, actor=request.user, comment=payload.comment)
    return 201, serialize.promotion_request(_requests(request).get(pk=created.pk))


@router.get("/forgetting-matrix", summary="Versions × suites: scores and deltas (the privacy rule applies)")
def matrix(request, last: int | None = Query(None, ge=1, le=100_000,
                                             description="Only the newest `last` versions (default: all).")) -> dict:
    return forgetting_matrix_for(request.user, last=last)


def _requests(request):
    return PromotionRequest.objects.filter(version__skill__team__in=teams_of(request.user)).select_related(
        "version__skill__team", "requested_by")


@router.get("/promotion-requests", response=page_of(PromotionRequestOut), tags=["promotions"])
def requests_list(request, page: Query[PageParams], status: str | None = None, awaiting_me: bool = False):
    qs = requests_awaiting(request.user).select_related("version__skill__team") if awaiting_me else _requests(request)
    if status:
        qs = qs.filter(status=status)
    return paged(qs.order_by("-created_at", "-id"), serialize.promotion_request, page)


@router.get("/promotion-requests/{pk}", response=PromotionRequestOut, tags=["promotions"])
def requests_detail(request, pk: int):
    return serialize.promotion_request(get_object_or_404(_requests(request), pk=pk))


@router.post("/promotion-requests/{pk}/decision", response=PromotionRequestOut, tags=["promotions"],
             summary="Approve (promoting the version) or reject: a skill owner who did not ask for it")
def requests_decide(request, pk: int, payload: DecisionIn):
    promotion = get_object_or_404(_requests(request), pk=pk)
    approval_decide(request=promotion, approver=request.user, decision=payload.decision, comment=payload.comment)
    return serialize.promotion_request(_requests(request).get(pk=pk))


@router.get("/production", tags=["production"], summary="The production version and its manifest (checksums)")
def production(request) -> dict:
    current = production_version()
    if current is None:
        raise Problem(404, "There is no production model yet: import a base model first (make model).",
                      code="no-production")
    if not case_access(request.user).in_a_team:
        raise Problem(403, "You are in no team yet: ask a platform admin to add you to one.", code="no-team")
    chain = _lineage(current)
    return {
        **serialize.version(_versions(request).get(pk=current.pk)),
        "manifest": {
            "base_model": {"name": current.base_model.name, "sha256": current.base_model.sha256,
                           "architecture": current.base_model.architecture,
                           "context_length": current.base_model.context_length},
            "artifact_path": current.artifact_path, "adapter_path": current.adapter_path,
            "checksums": current.checksums,
            "lineage": [{"number": v.number, "skill": v.skill.slug if v.skill_id else None,
                         "promoted_at": v.promoted_at} for v in chain],
            "skills": [v.skill.slug for v in chain if v.skill_id],
        },
    }


def _lineage(current: ModelVersion) -> list[ModelVersion]:
    """Production's chain back to its base in one query: every version on it is a base or was production."""
    rows = {v.pk: v for v in ModelVersion.objects.filter(Q(promoted_at__isnull=False) | Q(skill__isnull=True)
                                                         | Q(pk=current.pk)).select_related("skill")}
    chain, at = [], rows.get(current.pk)
    while at is not None:
        chain.append(at)
        at = rows.get(at.parent_id)
    return chain[::-1]
