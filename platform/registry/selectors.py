"""Reads for the registry: lineage, scores, the forgetting matrix, what awaits whom."""

from django.db.models import Q, QuerySet

from registry.models import EvalRun, GateResult, ModelVersion, PromotionRequest, Role, TrainingJob
from registry.permissions import is_platform_admin
from skills.models import EvalSuite, Skill


def production_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.PRODUCTION).select_related(
        "skill", "base_model", "promoted_by").first()


def lineage(version: ModelVersion | None) -> list[ModelVersion]:
    """The chain from the base model to `version`, oldest first."""
    chain = []
    while version is not None:
        chain.append(version)
        version = version.parent
    return chain[::-1]


def skills_held(version: ModelVersion | None) -> list[Skill]:
    return [v.skill for v in lineage(version) if v.skill_id]


def teams_of(user) -> QuerySet:
    from registry.models import Team

    if is_platform_admin(user):
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user)


def jobs_visible_to(user) -> QuerySet:
    return TrainingJob.objects.filter(skill__team__in=teams_of(user)).select_related("skill", "parent_version")


def versions_visible_to(user) -> QuerySet:
    """Base versions are everyone's; a skill's versions are its team's."""
    return ModelVersion.objects.filter(Q(skill__isnull=True) | Q(skill__team__in=teams_of(user))).select_related(
        "skill", "parent")


def requests_awaiting(user) -> QuerySet:
    """Open promotion requests this user may decide: a skill owner of the skill's team, not the requester."""
    qs = PromotionRequest.objects.filter(status=PromotionRequest.Status.OPEN).exclude(requested_by=user)
    if not is_platform_admin(user):
        qs = qs.filter(version__skill__team__memberships__user=user,
                       version__skill__team__memberships__role__in=[Role.SKILL_OWNER, Role.PLATFORM_ADMIN])
    return qs.select_related("version", "version__skill", "requested_by").distinct()


def score_of(version: ModelVersion, suite: EvalSuite) -> float | None:
    run = EvalRun.objects.filter(version=version, suite=suite, status=EvalRun.Status.SUCCEEDED).first()
    return run.score if run else None


def forgetting_matrix(versions: list[ModelVersion] | None = None) -> dict:
    """Versions × suites (each skill's current suite, then the retention probes): score and delta
    against each version's parent. The numbers are the stored eval runs the gates used."""
    if versions is None:
        versions = list(ModelVersion.objects.exclude(status=ModelVersion.Status.FAILED).order_by("number"))
    suites = []
    for skill in Skill.objects.filter(status=Skill.Status.ACTIVE).order_by("pk"):
        suite = skill.eval_suites.order_by("-pk").first()
        if suite is not None:
            suites.append(suite)
    suites += list(EvalSuite.objects.filter(kind=EvalSuite.Kind.PROBES).order_by("pk"))
    runs = {(r.version_id, r.suite_id): r for r in EvalRun.objects.filter(
        version__in=versions, suite__in=suites, status=EvalRun.Status.SUCCEEDED)}
    rows = []
    for version in versions:
        cells = []
        for suite in suites:
            run = runs.get((version.pk, suite.pk))
            parent_run = runs.get((version.parent_id, suite.pk)) if version.parent_id else None
            score = run.score if run else None
            delta = (score - parent_run.score) if (run and parent_run and score is not None
                                                   and parent_run.score is not None) else None
            cells.append({"score": score, "delta": delta, "passed": run.passed if run else None,
                          "total": run.total if run else None})
        gate = GateResult.objects.filter(candidate=version).first()
        rows.append({"version": version.number, "label": version.label, "status": version.status,
                     "parent": version.parent.number if version.parent_id else None,
                     "method": version.training_job.method if version.training_job_id else None,
                     "gate": gate.verdict if gate else None, "cells": cells})
    columns = [{"suite": s.pk, "name": "retention probes" if s.kind == EvalSuite.Kind.PROBES else s.skill.slug,
                "kind": s.kind} for s in suites]
    return {"columns": columns, "rows": rows}
