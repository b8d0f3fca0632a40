"""Reads for the registry: lineage, scores, the forgetting matrix, a gate's report, what awaits whom.

The forgetting matrix and the gate report are each shaped once, here; the pages, `manage.py gate`, the
demo's terminal output and its HTML report all render these dicts (text: registry.reports; HTML: the
frontend/_forgetting_matrix.html and frontend/_gate_table.html partials)."""

from pathlib import Path

from django.conf import settings
from django.db.models import Q, QuerySet

from evaluation.models import EvalRun
from registry.models import GateResult, ModelVersion, PromotionRequest
from registry.services.remedies import remedy_of_gate
from registry.services.versions import production_version  # noqa: F401 (one definition, re-exported)
from skills.models import EvalSuite, Skill
from skills.services import TokenBudget
from teams.models import Role
from teams.permissions import is_platform_admin
from teams.selectors import teams_of


def lineage(version: ModelVersion | None) -> list[ModelVersion]:
    """The chain from the base model to `version`, oldest first."""
    chain = []
    while version is not None:
        chain.append(version)
        version = version.parent
    return chain[::-1]


def production_token_budget() -> TokenBudget:
    """What an upload's lengths are measured against: the production model's context and tokenizer."""
    current = production_version()
    if current is None:
        return TokenBudget()
    base = current.base_model
    return TokenBudget(context_length=base.context_length or 2048,
                       tokenizer_json=Path(settings.ACCRETE_ARTIFACTS) / base.artifact_path / "tokenizer.json")


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
                     "method": version.job.method if version.job else None,
                     "gate": gate.verdict if gate else None, "cells": cells})
    columns = [{"suite": s.pk, "name": "retention probes" if s.kind == EvalSuite.Kind.PROBES else s.skill.slug,
                "kind": s.kind} for s in suites]
    return {"columns": columns, "rows": rows}


def gate_report(gate: GateResult) -> dict:
    """One gate as every view of it shows it: the rows (each with its sample size `n`), the lineage rows,
    the warnings of suites too small for their tolerance, the reasons it blocked, the remedy, and the
    cases that flipped (all of them, and those that went pass→fail)."""
    # Gates recorded before the paired intervals carry no `n`: their sample is the suite's size.
    rows = [{**row, "n": row.get("n", row.get("total"))} for row in gate.rows]
    return {
        "gate": gate,
        "candidate": gate.candidate,
        "baseline": gate.baseline,
        "verdict": gate.verdict,
        "rows": rows,
        "lineage_rows": [row for row in rows if row.get("lineage")],
        "warnings": [(row["name"], row["warning"]) for row in rows if row.get("warning")],
        "reasons": list(gate.reasons),
        "remedy": remedy_of_gate(gate),
        "flipped": list(gate.flipped),
        "dropped": [f for f in gate.flipped if f["direction"] == "pass→fail"],
    }


def version_page(version: ModelVersion, user) -> dict:
    """A version's scorecard (one eval run per suite), its gate, its open promotion request and whether
    this user may decide it."""
    runs = list(EvalRun.objects.filter(version=version).select_related("suite", "suite__skill").order_by("suite_id"))
    gate = GateResult.objects.filter(candidate=version).select_related("baseline").first()
    open_request = PromotionRequest.objects.filter(version=version, status=PromotionRequest.Status.OPEN).select_related(
        "requested_by").first()
    decidable = open_request is not None and requests_awaiting(user).filter(pk=open_request.pk).exists()
    report = gate_report(gate) if gate is not None else None
    return {
        "version": version,
        "lineage": lineage(version),
        "scorecard": runs,
        "gate": gate,
        "gate_report": report,
        "remedy": report["remedy"] if report is not None else None,
        "open_request": open_request,
        "can_decide": decidable,
        "requests": list(version.promotion_requests.select_related("requested_by").prefetch_related(
            "approvals__approver").order_by("-created_at")),
        "children": list(version.children.order_by("number")),
    }
