"""The regression gate, its whole lifecycle: start, the scores it needs, decide, fail, re-run, reclaim.

    candidate ──gate_start──> evaluating ──gate_evaluate──> awaiting_approval | blocked | stale
                                  │  └──gate_fail──> failed ──gate_rerun──> evaluating
                                  └── stuck past the eval time limit: gate_reap_stuck re-enqueues, then fails

The worker (workers.pipeline) only calls these and scores what `gate_plan` lists; the state changes go
through registry.services.versions, whose primitive refuses awaiting-approval without a passing result.

A candidate is compared with its parent (the production version it was trained from) on every active
skill's eval suite and on the retention probes. Two rules block, each row recording both:
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
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.services import audit_record
from config import dispatch
from evaluation.models import CaseResult, EvalRun
from registry.errors import GateNotReady, TransitionError
from registry.models import GateResult, ModelVersion, PromotionRequest
from registry.services.approvals import promotion_request_create
from registry.services.versions import (
    _team_of,
    _transition,
    version_mark_stale,
)
from skills.models import EvalSuite, Skill
from teams.models import Role
from teams.permissions import require_role
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
        "suite": str(after.suite), "suite_id": after.suite_id, "case": new.case.key, "direction": "pass→fail" if prev.passed else "fail→pass",
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
    """Decide: compare the candidate with its parent (and its lineage) on every suite, record the verdict
    and move the candidate by it. Idempotent: a second call returns the recorded result (and finishes
    the move, should the first call have stopped between the two)."""
    existing = GateResult.objects.filter(candidate=candidate).first()
    if existing is not None:
        _decide(candidate=candidate, gate=existing, actor=actor)
        return existing
    candidate.refresh_from_db(fields=["status"])
    if candidate.status not in {S.EVALUATING, S.STALE}:
        raise TransitionError(f"v{candidate.number} is {S(candidate.status).label.lower()}; only an evaluating "
                              "candidate is gated (gate_start moves a candidate there).")
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
    try:
        with transaction.atomic():
            gate = GateResult.objects.create(candidate=candidate, baseline=baseline, verdict=verdict, rows=rows,
                                             flipped=flipped, reasons=reasons)
            audit_record(actor=actor, action=f"gate.{verdict}", obj=gate, team=_team_of(candidate),
                         data={"candidate": candidate.number, "baseline": baseline.number, "reasons": reasons})
            _decide(candidate=candidate, gate=gate, actor=actor)
    except IntegrityError:
        if not GateResult.objects.filter(candidate=candidate).exists():
            raise
        return gate_evaluate(candidate=candidate, actor=actor)  # another delivery decided first: its result stands
    return gate


def _decide(*, candidate: ModelVersion, gate: GateResult, actor) -> None:
    """Move an evaluating candidate by its recorded verdict: stale when production moved meanwhile (the
    staleness rule wins over any verdict), blocked, or awaiting approval."""
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update(of=("self",))
        candidate = locked.select_related("parent").get(pk=candidate.pk)
        if candidate.status != S.EVALUATING:
            return  # already decided, or a promotion marked it stale while it was scored
        if version_mark_stale(version=candidate, actor=actor):
            return  # the staleness rule wins over any verdict
        if gate.verdict == GateResult.Verdict.BLOCK:
            _transition(version=candidate, to=S.BLOCKED, actor=actor, data={"reasons": gate.reasons},
                        reason="the gate blocked it: " + "; ".join(gate.reasons))
        else:
            _transition(version=candidate, to=S.AWAITING_APPROVAL, actor=actor)


# --- the lifecycle around the decision -------------------------------------------------------------

def gate_start(*, version: ModelVersion, actor=None) -> ModelVersion:
    """A worker starts (or resumes) a candidate's gate: candidate → evaluating. A redelivered task finds it
    evaluating and carries on. A candidate whose parent left production is marked stale instead: it could
    never be promoted, so it is not scored. Any other state is returned as it is (nothing to do)."""
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update(of=("self",))
        version = locked.select_related("parent").get(pk=version.pk)
        if version.status not in {S.CANDIDATE, S.EVALUATING} or version.parent_id is None:
            return version
        if version_mark_stale(version=version, actor=actor):
            return version
        if version.status == S.CANDIDATE:
            return _transition(version=version, to=S.EVALUATING, actor=actor,
                               fields={"gate_started_at": timezone.now(), "gate_error": ""})
    return version


def gate_plan(*, candidate: ModelVersion) -> list[tuple[ModelVersion, EvalSuite]]:
    """The scores a gate needs, in the order a worker computes them: the parent's on every gate suite
    (computed once, by its first candidate, then reused), then the candidate's. (A gate task that queued the
    parent's half for a second eval worker computes the candidate's first: workers.pipeline.gate_scores_compute.)"""
    suites = gate_suites(candidate=candidate)
    return [(subject, suite) for subject in (candidate.parent, candidate) for suite in suites]


def gate_fail(*, version: ModelVersion, error: str, actor=None) -> bool:
    """The gate could not finish (a worker error, scores that never came, a gate nobody ran): the version
    becomes failed, the reason kept on it (its page shows it) and in the audit log; a skill owner can
    re-run it (gate_rerun). False when the version had left candidate/evaluating meanwhile."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status not in {S.CANDIDATE, S.EVALUATING}:
            return False
        _transition(version=version, to=S.FAILED, actor=actor, reason=error[:1000],
                    fields={"gate_error": error[:5000]})
    return True


def gate_rerun(*, version: ModelVersion, actor, enqueue: bool = True) -> ModelVersion:
    """A skill owner (an approver) of the skill's team re-runs a failed gate: failed → evaluating, and the
    gate task is queued again (`enqueue=False`: the caller runs it, as `manage.py gate --rerun` does).
    Scores already computed are reused. A failed candidate whose parent left production is marked stale
    instead, and the refusal says to retrain it."""
    if version.skill_id is None:
        raise TransitionError(f"v{version.number} is a base version: it has no gate.")
    require_role(actor, version.skill.team, Role.SKILL_OWNER, action=f"re-run the gate of v{version.number}")
    stale = None
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update(of=("self",))
        version = locked.select_related("parent", "skill").get(pk=version.pk)
        if version.status != S.FAILED:
            raise TransitionError(f"v{version.number} is {S(version.status).label.lower()}; only a version whose "
                                  "gate failed can have its gate re-run.")
        stale = version_mark_stale(version=version, actor=actor)
        if not stale:
            _transition(version=version, to=S.EVALUATING, actor=actor, data={"rerun": True},
                        fields={"gate_started_at": timezone.now(), "gate_requeues": 0, "gate_error": ""})
            if enqueue:
                transaction.on_commit(lambda pk=version.pk: dispatch.send(dispatch.GATE_CANDIDATE, pk))
    if stale:
        raise TransitionError(f"{stale} It is stale now: its gate is not re-run.")
    return version


def gate_request_promotion(*, version: ModelVersion) -> PromotionRequest | None:
    """After a pass, the training job's requester asks for promotion (also on a redelivery after a crash
    between the verdict and the request: it is never lost). None when there is nothing to request;
    RoleRequired when the requester lost the role meanwhile (a contributor asks from the page)."""
    version.refresh_from_db(fields=["status"])
    job = version.job
    if version.status != S.AWAITING_APPROVAL or job is None or job.requested_by_id is None:
        return None
    return promotion_request_create(version=version, actor=job.requested_by, comment="Passed the gate.")


def gate_timeout_s() -> int:
    """How long a gate may take from its (re)start before the reaper calls it stuck: the eval task's time
    limit (Celery kills it by then) and a grace for the queue."""
    return settings.CELERY_EVAL_TIME_LIMIT_S + settings.ACCRETE_GATE_GRACE_S


def gate_reap_stuck(*, now=None) -> list[tuple[int, str]]:
    """Gates a lost message or a killed eval worker left hanging: a version still evaluating past the
    gate timeout since its gate (re)started, or a candidate whose gate never started that long after it
    was created. Each is re-enqueued (the task is idempotent) up to ACCRETE_REQUEUE_MAX_ATTEMPTS times,
    then failed with the reason. Returns (version id, "requeued" | "failed") for each."""
    now = now or timezone.now()
    cutoff = now - timezone.timedelta(seconds=gate_timeout_s())
    stuck = (ModelVersion.objects.filter(status__in=[S.CANDIDATE, S.EVALUATING], parent__isnull=False)
             .annotate(since=Coalesce("gate_started_at", "created_at")).filter(since__lt=cutoff))
    outcomes = []
    for version in stuck:
        with transaction.atomic():
            if version.gate_requeues < settings.ACCRETE_REQUEUE_MAX_ATTEMPTS:
                # Compare-and-set on when it last (re)started: a gate that just restarted keeps its turn.
                if ModelVersion.objects.filter(pk=version.pk, status=version.status,
                                               gate_started_at=version.gate_started_at).update(
                        gate_started_at=now, gate_requeues=F("gate_requeues") + 1) == 1:
                    audit_record(actor=None, action="gate.requeued", obj=version, team=_team_of(version),
                                 data={"status": version.status, "requeues": version.gate_requeues + 1})
                    transaction.on_commit(lambda pk=version.pk: dispatch.send(dispatch.GATE_CANDIDATE, pk))
                    outcomes.append((version.pk, "requeued"))
            elif gate_fail(version=version, error=(
                    f"The gate did not finish within {gate_timeout_s() // 60} minutes of its start, "
                    f"{version.gate_requeues + 1} time(s): its eval worker died or its message was lost. "
                    "Re-run the gate once an eval worker is up.")):
                outcomes.append((version.pk, "failed"))
    return outcomes
