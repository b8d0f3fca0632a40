"""The regression gate: a candidate against its parent (the production version it was trained from) on
every active skill's eval suite and on the retention probes.

Two rules block, each row recording both:
- per step (the rule since the start): a drop against the parent beyond the skill's tolerance (the base
  model's probe tolerance for the probes); the skill being added must gain at least its min-gain.
- the lineage budget: a candidate is compared with its parent only, so ten skills that each cost 3 probe
  points would all pass while the model loses 30. So each earlier skill is also compared with the best
  score it had on the same suite since it entered production, and the probes with the base model of the
  lineage, each against a cumulative tolerance (ACCRETE_LINEAGE_SKILL_TOLERANCE / _PROBE_TOLERANCE).

Each row also carries the paired difference candidate − parent on the same cases with its 95 % interval,
and a warning when the suite is too small to resolve its tolerance. Both are information: the verdict
reads the point estimates."""

import math

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from audit.services import audit_record
from evaluation.models import CaseResult, EvalRun
from registry.errors import GateNotReady, TransitionError
from registry.models import GateResult, ModelVersion
from registry.services.versions import production_version, version_transition
from skills.models import EvalSuite, Skill
from workers.engine.contract.intervals import paired_difference_interval

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


def _case_pairs(before: EvalRun, after: EvalRun) -> list[tuple[CaseResult, CaseResult]]:
    """(parent's result, candidate's result) for each counted case both runs answered: the cases the
    scores are computed over."""
    old = {r.case_id: r for r in CaseResult.objects.filter(eval_run=before)}
    return [(old[new.case_id], new)
            for new in CaseResult.objects.filter(eval_run=after).select_related("case").order_by("case_id")
            if new.case_id in old and new.case.counted]


def _flips(after: EvalRun, pairs: list[tuple[CaseResult, CaseResult]]) -> list[dict]:
    return [{
        "suite": str(after.suite), "case": new.case.key, "direction": "pass→fail" if prev.passed else "fail→pass",
        "prompt": new.case.prompt[-1]["content"], "expected": new.case.reference,
        "old_output": prev.output, "new_output": new.output, "detail": new.detail,
    } for prev, new in pairs if prev.passed != new.passed]


def small_suite_warning(*, n: int, tolerance: float) -> str | None:
    """A suite where one flipped case moves the score by at least the tolerance cannot tell a drop within
    tolerance from one beyond it."""
    if tolerance <= EPS or n <= 0 or 1 / n < tolerance - EPS:
        return None
    return (f"{n} cases cannot resolve a {tolerance * 100:.0f}-point tolerance: one flipped case is a "
            f"{100 / n:.0f}-point swing; add eval cases (≥ {math.ceil(2 / tolerance - EPS)})")


def _ancestors(version: ModelVersion) -> list[ModelVersion]:
    """`version` and the versions it descends from, oldest (the base) first."""
    chain = []
    while version is not None:
        chain.append(version)
        version = version.parent
    return chain[::-1]


def _lineage_reference(*, chain: list[ModelVersion], suite: EvalSuite) -> tuple[ModelVersion, float, str] | None:
    """What the candidate's score on `suite` is held to along the lineage: (version, score, kind), or None
    when nothing in the lineage was scored on this suite."""
    if suite.kind == EvalSuite.Kind.PROBES:
        root = chain[0]
        run = EvalRun.objects.filter(version=root, suite=suite, status=EvalRun.Status.SUCCEEDED).first()
        return (root, run.score, "base") if run is not None and run.score is not None else None
    entered = next((i for i, v in enumerate(chain) if v.skill_id == suite.skill_id and v.promoted_at), None)
    if entered is None:
        return None
    window = [v for v in chain[entered:] if v.promoted_at is not None]
    runs = {r.version_id: r.score for r in EvalRun.objects.filter(
        version__in=window, suite=suite, status=EvalRun.Status.SUCCEEDED, score__isnull=False)}
    scored = [(v, runs[v.pk]) for v in window if v.pk in runs]
    if not scored:
        return None
    best = max(scored, key=lambda pair: pair[1])  # the earliest of equal bests
    return best[0], best[1], "best"


def lineage_reason(name: str, lineage: dict) -> str:
    points = (lineage["score"] - lineage["after"]) * 100
    where = (f"the base v{lineage['version']}" if lineage["kind"] == "base"
             else f"its best, v{lineage['version']}")
    return f"{name} {'are' if name == 'retention probes' else 'is'} {points:.0f} points below {where} " \
           f"(lineage budget {lineage['budget']:.0%})"


def gate_evaluate(*, candidate: ModelVersion, actor=None) -> GateResult:
    """Compare the candidate with its parent (and its lineage) on every suite and record the verdict.
    Idempotent."""
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
    chain = _ancestors(baseline)

    rows, flipped, reasons = [], [], []
    for suite in suites:
        before, after = runs[(baseline.pk, suite.pk)], runs[(candidate.pk, suite.pk)]
        b, a = before.score or 0.0, after.score or 0.0
        is_probe = suite.kind == EvalSuite.Kind.PROBES
        tolerance = candidate.base_model.effective_probe_tolerance if is_probe else suite.skill.tolerance
        name = "retention probes" if is_probe else suite.skill.slug
        pairs = _case_pairs(before, after)
        interval = paired_difference_interval([float(p.passed) for p, _ in pairs],
                                              [float(n.passed) for _, n in pairs], bounds=(-1.0, 1.0))
        row = {"suite": suite.pk, "name": name, "kind": suite.kind, "before": b, "after": a, "delta": a - b,
               "tolerance": tolerance, "passed_before": before.passed, "passed_after": after.passed,
               "total": after.total, "target": (not is_probe and suite.skill_id == candidate.skill_id),
               "verdict": "pass", "n": interval.n,
               # JSON (and PostgreSQL's jsonb) has no infinity: an undefined interval is stored as null.
               "interval": [interval.low, interval.high] if interval.defined else None,
               "warning": small_suite_warning(n=after.total, tolerance=tolerance), "lineage": None}
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
        else:
            reference = _lineage_reference(chain=chain, suite=suite)
            if reference is not None:
                version, score, kind = reference
                budget = (settings.ACCRETE_LINEAGE_PROBE_TOLERANCE if is_probe
                          else settings.ACCRETE_LINEAGE_SKILL_TOLERANCE)
                left = budget + (a - score)
                lineage = {"version": version.number, "kind": kind, "score": score, "after": a,
                           "delta": a - score, "budget": budget, "left": 0.0 if abs(left) < EPS else left,
                           "verdict": "block" if score - a > budget + EPS else "pass"}
                row["lineage"] = lineage
                # One reason per row: a row the per-step rule already blocked names that drop.
                if lineage["verdict"] == "block" and row["verdict"] == "pass":
                    row["verdict"] = "block"
                    reasons.append(lineage_reason(name, lineage))
        rows.append(row)
        flipped.extend(_flips(after, pairs))

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
