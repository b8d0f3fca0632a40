"""Reads for evaluation: a skill's scores across the versions evaluated on its suites."""

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from evaluation.models import EvalRun


def score_history(skill) -> QuerySet:
    """Every finished eval run of one of the skill's suites, oldest version first."""
    return (EvalRun.objects.filter(suite__skill=skill, status=EvalRun.Status.SUCCEEDED)
            .select_related("version", "suite", "suite__demonstration_set").order_by("version__number"))


def claimable_runs() -> Q:
    """The runs a worker may claim for computing: queued, failed, or "running" past the eval time limit (its
    worker is gone: Celery would have killed the task by now)."""
    dead = timezone.now() - timezone.timedelta(seconds=settings.CELERY_EVAL_TIME_LIMIT_S)
    return Q(status__in=[EvalRun.Status.QUEUED, EvalRun.Status.FAILED]) | Q(status=EvalRun.Status.RUNNING,
                                                                          created_at__lt=dead)


def suites_to_score(*, version, suites: list) -> list:
    """Those of `suites` whose scores on `version` nobody has and nobody is computing: what eval_run_claim
    would claim now."""
    taken = set(EvalRun.objects.filter(version=version, suite__in=suites).exclude(claimable_runs())
                .values_list("suite_id", flat=True))
    return [suite for suite in suites if suite.pk not in taken]


def runs_in_progress(*, version, suites: list) -> QuerySet:
    """The runs of `version` on `suites` a live worker is computing now."""
    return EvalRun.objects.filter(version=version, suite__in=suites, status=EvalRun.Status.RUNNING).exclude(
        claimable_runs())
