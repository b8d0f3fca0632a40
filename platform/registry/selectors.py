"""Reads for the registry: lineage, scores, the forgetting matrix, what awaits whom."""

from django.db.models import Q, QuerySet

from registry.models import EvalRun, GateResult, ModelVersion, PromotionRequest, Role, TrainingJob
from registry.permissions import is_platform_admin
from registry.services.remedies import remedy_of_gate
from registry.services.versions import production_version  # noqa: F401 (one definition, re-exported)
from skills.models import EvalSuite, Skill


def lineage(version: ModelVersion | None) -> list[ModelVersion]:
    """The chain from the base model to `version`, oldest first."""
    chain = []
    while version is not None:
        chain.append(version)
        version = version.parent
    return chain[::-1]



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



def forgetting_matrix(versions: list[ModelVersion] | None = None) -> dict:
    """Versions × suites (each skill's current suite, then the retention probes): score and delta
    against each version's parent, and for gated versions the lineage budget the gate applied (delta
    against the skill's best production score, or the base model for the probes). The numbers are the
    stored eval runs the gates used."""
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
        gate = GateResult.objects.filter(candidate=version).first()
        # The lineage budget as the gate recorded it: reference version, score, cumulative delta, budget.
        lineage_of = {row["suite"]: row.get("lineage") for row in gate.rows if "suite" in row} if gate else {}
        cells = []
        for suite in suites:
            run = runs.get((version.pk, suite.pk))
            parent_run = runs.get((version.parent_id, suite.pk)) if version.parent_id else None
            score = run.score if run else None
            delta = (score - parent_run.score) if (run and parent_run and score is not None
                                                   and parent_run.score is not None) else None
            cells.append({"score": score, "delta": delta, "passed": run.passed if run else None,
                          "total": run.total if run else None, "lineage": lineage_of.get(suite.pk)})
        rows.append({"version": version.number, "label": version.label, "status": version.status,
                     "parent": version.parent.number if version.parent_id else None,
                     "method": version.training_job.method if version.training_job_id else None,
                     "gate": gate.verdict if gate else None, "cells": cells})
    columns = [{"suite": s.pk, "name": "retention probes" if s.kind == EvalSuite.Kind.PROBES else s.skill.slug,
                "kind": s.kind} for s in suites]
    return {"columns": columns, "rows": rows}


# --- Reads for the browser UI ------------------------------------------------------------------


def dashboard_summary(user) -> dict:
    """What the dashboard shows: production and its lineage, live jobs, what awaits this user, and the
    candidates the gate blocked lately (of the teams this user sees)."""
    current = production_version()
    chain = lineage(current)
    return {
        "production": current,
        "lineage": chain,
        "skills": [v.skill for v in chain if v.skill_id],
        "running_jobs": list(jobs_visible_to(user).filter(
            status__in=[TrainingJob.Status.VALIDATING, TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING])[:10]),
        "awaiting_me": list(requests_awaiting(user)[:10]),
        "blocked": list(versions_visible_to(user).filter(status=ModelVersion.Status.BLOCKED)
                        .select_related("gate").order_by("-created_at")[:5]),
    }


def job_page(job: TrainingJob) -> dict:
    """A job with its metric curves, events and the candidate it produced (if any)."""
    from registry.models import MetricPoint

    points = list(MetricPoint.objects.filter(job=job).order_by("step").values_list("step", "loss", "kl"))
    return {
        "job": job,
        "loss": [(step, loss) for step, loss, _ in points if loss is not None],
        "kl": [(step, kl) for step, _, kl in points if kl is not None],
        "events": list(job.events.order_by("created_at", "id")),
        "candidate": ModelVersion.objects.filter(training_job=job).first(),
        "anchoring": anchoring_summary(job),
    }


def anchoring_summary(job: TrainingJob) -> dict:
    """How a job held on to what the model knew, read from its config snapshot: anchor ratio and teacher,
    the anchor pool's hash, and which earlier skills it rehearsed."""
    from workers.engine.config import DEFAULT_ANCHOR_RATIO  # pure Python, no torch

    config = job.config or {}
    if "anchor_ratio" not in config:
        return {"recorded": False}
    ratio = config["anchor_ratio"]
    ratio = DEFAULT_ANCHOR_RATIO.get(job.method, 0.0) if ratio is None else float(ratio)
    per_step = 0 if ratio == 0 else max(1, round(ratio * config.get("batch_size", 1)))
    return {"recorded": True, "anchored": ratio > 0, "ratio": ratio, "per_step": per_step,
            "method_default": config["anchor_ratio"] is None, "teacher": config.get("anchor_teacher", "ema"),
            "pool": (config.get("anchor_pool_sha256") or "")[:12], "rehearsal": config.get("rehearsal", "anchor"),
            "rehearsal_skills": config.get("rehearsal_skills"), "method": job.method}


def version_page(version: ModelVersion, user) -> dict:
    """A version's scorecard (one eval run per suite), its gate, its open promotion request and whether
    this user may decide it."""
    runs = list(EvalRun.objects.filter(version=version).select_related("suite", "suite__skill").order_by("suite_id"))
    gate = GateResult.objects.filter(candidate=version).select_related("baseline").first()
    open_request = PromotionRequest.objects.filter(version=version, status=PromotionRequest.Status.OPEN).select_related(
        "requested_by").first()
    decidable = open_request is not None and requests_awaiting(user).filter(pk=open_request.pk).exists()
    return {
        "version": version,
        "lineage": lineage(version),
        "scorecard": runs,
        "gate": gate,
        "remedy": remedy_of_gate(gate) if gate is not None else None,
        "open_request": open_request,
        "can_decide": decidable,
        "requests": list(version.promotion_requests.select_related("requested_by").prefetch_related(
            "approvals__approver").order_by("-created_at")),
        "children": list(version.children.order_by("number")),
    }


def audit_events(*, action: str = "", team_id: int | None = None, actor: str = "") -> QuerySet:
    from registry.models import AuditEvent

    qs = AuditEvent.objects.select_related("team", "actor")
    if action:
        qs = qs.filter(action__startswith=action)
    if team_id:
        qs = qs.filter(team_id=team_id)
    if actor:
        qs = qs.filter(actor_label=actor)
    return qs


def audit_filter_choices() -> dict:
    from registry.models import AuditEvent, Team

    return {
        "actions": sorted(set(AuditEvent.objects.values_list("action", flat=True).distinct())),
        "teams": list(Team.objects.order_by("name")),
        "actors": sorted(set(AuditEvent.objects.values_list("actor_label", flat=True).distinct())),
    }
