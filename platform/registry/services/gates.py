"""The regression gate: a candidate against its parent (the production version it was trained from) on
every active skill's eval suite and on the retention probes. Any drop beyond tolerance blocks."""

from django.db import transaction
from django.db.models import Q

from registry.errors import GateNotReady, TransitionError
from registry.models import CaseResult, EvalRun, GateResult, ModelVersion
from registry.services.audit import audit_record
from registry.services.versions import production_version, version_transition
from skills.models import EvalSuite, Skill

S = ModelVersion.Status
EPS = 1e-9


def gate_suites(*, candidate: ModelVersion) -> list[EvalSuite]:
    """What a candidate is scored on: each active skill's current suite, and the base model's probes."""
    suites = []
    # The skill being added is always scored, even if archived meanwhile: it must show its gain.
    skills = Skill.objects.filter(Q(status=Skill.Status.ACTIVE) | Q(pk=candidate.skill_id)).order_by("pk")
    for skill in skills:
        suite = skill.eval_suites.order_by("-pk").first()
        if suite is not None:
            suites.append(suite)
    probes = EvalSuite.objects.filter(kind=EvalSuite.Kind.PROBES, base_model=candidate.base_model).order_by("-pk").first()
    if probes is not None:
        suites.append(probes)
    return suites


def _flips(before: EvalRun, after: EvalRun) -> list[dict]:
    old = {r.case_id: r for r in CaseResult.objects.filter(eval_run=before).select_related("case")}
    flips = []
    for new in CaseResult.objects.filter(eval_run=after).select_related("case"):
        prev = old.get(new.case_id)
        if prev is None or prev.passed == new.passed or not new.case.counted:
            continue
        flips.append({
            "suite": str(after.suite), "case": new.case.key, "direction": "pass→fail" if prev.passed else "fail→pass",
            "prompt": new.case.prompt[-1]["content"], "expected": new.case.reference,
            "old_output": prev.output, "new_output": new.output, "detail": new.detail,
        })
    return flips


def gate_evaluate(*, candidate: ModelVersion, actor=None) -> GateResult:
    """Compare the candidate with its parent on every suite and record the verdict. Idempotent."""
    existing = GateResult.objects.filter(candidate=candidate).first()
    if existing is not None:
        return existing
    baseline = candidate.parent
    if baseline is None:
        raise TransitionError(f"v{candidate.number} has no parent: a base version is not gated.")
    suites = gate_suites(candidate=candidate)
    runs = {(r.version_id, r.suite_id): r for r in EvalRun.objects.filter(
        version__in=[candidate, baseline], suite__in=suites, status=EvalRun.Status.SUCCEEDED)}
    missing = [f"{v} on {s}" for s in suites for v in (baseline, candidate) if (v.pk, s.pk) not in runs]
    if missing:
        raise GateNotReady("Scores missing for: " + "; ".join(missing) + ". Run the evaluations first.")

    rows, flipped, reasons = [], [], []
    for suite in suites:
        before, after = runs[(baseline.pk, suite.pk)], runs[(candidate.pk, suite.pk)]
        b, a = before.score or 0.0, after.score or 0.0
        is_probe = suite.kind == EvalSuite.Kind.PROBES
        tolerance = candidate.base_model.effective_probe_tolerance if is_probe else suite.skill.tolerance
        name = "retention probes" if is_probe else suite.skill.slug
        row = {"suite": suite.pk, "name": name, "kind": suite.kind, "before": b, "after": a, "delta": a - b,
               "tolerance": tolerance, "passed_before": before.passed, "passed_after": after.passed,
               "total": after.total, "target": (not is_probe and suite.skill_id == candidate.skill_id),
               "verdict": "pass"}
        if b - a > tolerance + EPS:
            row["verdict"] = "block"
            reasons.append(f"{name} dropped from {b:.0%} to {a:.0%} (tolerance {tolerance:.0%})")
        if row["target"]:
            min_gain = suite.skill.min_gain
            row["min_gain"] = min_gain
            if a - b <= EPS or a - b < min_gain - EPS:
                row["verdict"] = "block"
                reasons.append(f"{name} (the skill being added) did not improve enough: {b:.0%} → {a:.0%} "
                               f"(needs a gain > 0 and ≥ {min_gain:.0%})")
        rows.append(row)
        flipped.extend(_flips(before, after))

    verdict = GateResult.Verdict.BLOCK if reasons else GateResult.Verdict.PASS
    with transaction.atomic():
        gate = GateResult.objects.create(candidate=candidate, baseline=baseline, verdict=verdict, rows=rows,
                                         flipped=flipped, reasons=reasons)
        audit_record(actor=actor, action=f"gate.{verdict}", obj=gate, team=candidate.skill.team if candidate.skill_id else None,
                     data={"candidate": candidate.number, "baseline": baseline.number, "reasons": reasons})
        current = production_version()
        candidate.refresh_from_db(fields=["status"])
        if candidate.status == S.STALE:
            pass  # a promotion while it was being scored already marked it stale (_mark_siblings_stale)
        elif current is None or current.pk != baseline.pk:
            version_transition(version=candidate, to=S.STALE, actor=actor, data={"reason": "production moved"})
        elif verdict == GateResult.Verdict.BLOCK:
            version_transition(version=candidate, to=S.BLOCKED, actor=actor, data={"reasons": reasons})
        else:
            version_transition(version=candidate, to=S.AWAITING_APPROVAL, actor=actor)
    return gate
