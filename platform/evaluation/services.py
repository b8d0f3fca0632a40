"""Eval runs: a version scored on one suite. Computed once per (version, suite), then reused."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from evaluation.models import CaseResult, EvalRun
from evaluation.selectors import claimable_runs
from skills.models import EvalCase, EvalSuite

R = EvalRun.Status


def eval_run_claim(*, version, suite: EvalSuite) -> EvalRun | None:
    """Claim the (version, suite) run for computing. None when its scores already exist or another
    worker is computing them: a version's scores are computed once."""
    try:
        with transaction.atomic():
            run, created = EvalRun.objects.get_or_create(version=version, suite=suite)
    except IntegrityError:
        return None
    if EvalRun.objects.filter(claimable_runs(), pk=run.pk).update(status=R.RUNNING, error="",
                                                                  created_at=timezone.now()) != 1:
        return None
    run.refresh_from_db()
    return run


def eval_run_complete(*, run: EvalRun, outputs: list[dict], seconds: float) -> EvalRun:
    """Store per-case outputs and the score over counted cases (probes the base failed do not count)."""
    cases = {case.pk: case for case in EvalCase.objects.filter(suite=run.suite)}
    with transaction.atomic():
        CaseResult.objects.filter(eval_run=run).delete()
        CaseResult.objects.bulk_create([
            CaseResult(eval_run=run, case=cases[o["case_id"]], output=o["output"], passed=o["passed"],
                       score=o["score"], extracted=o.get("extracted"), detail=o.get("detail", ""))
            for o in outputs
        ])
        eval_run_rescore(run=run)
        EvalRun.objects.filter(pk=run.pk).update(status=R.SUCCEEDED, seconds=seconds, finished_at=timezone.now())
        run.refresh_from_db()
        audit_record(actor=None, action="eval.completed", obj=run,
                     data={"version": run.version.number, "suite": str(run.suite), "score": run.score})
    return run


def eval_run_rescore(*, run: EvalRun) -> None:
    counted = CaseResult.objects.filter(eval_run=run, case__counted=True)
    total = counted.count()
    passed = counted.filter(passed=True).count()
    EvalRun.objects.filter(pk=run.pk).update(total=total, passed=passed, score=(passed / total) if total else None)


def eval_run_fail(*, run: EvalRun, error: str) -> None:
    EvalRun.objects.filter(pk=run.pk).update(status=R.FAILED, error=error[:5000], finished_at=timezone.now())


@transaction.atomic
def probes_calibrate(*, run: EvalRun) -> int:
    """After the base model's probe run: only the probes it answers correctly count from now on, so a
    later failure on any counted probe is forgetting, not a probe the model never could answer."""
    failed = CaseResult.objects.filter(eval_run=run, passed=False).values_list("case_id", flat=True)
    uncounted = EvalCase.objects.filter(pk__in=list(failed)).update(counted=False)
    for other in EvalRun.objects.filter(suite=run.suite, status=R.SUCCEEDED):
        eval_run_rescore(run=other)
    audit_record(actor=None, action="probes.calibrated", obj=run.suite,
                 data={"uncounted": uncounted, "base_version": run.version.number})
    return uncounted
