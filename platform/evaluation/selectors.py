"""Reads for evaluation: a skill's scores across the versions evaluated on its suites."""

from django.db.models import QuerySet

from evaluation.models import EvalRun


def score_history(skill) -> QuerySet:
    """Every finished eval run of one of the skill's suites, oldest version first."""
    return (EvalRun.objects.filter(suite__skill=skill, status=EvalRun.Status.SUCCEEDED)
            .select_related("version", "suite", "suite__demonstration_set").order_by("version__number"))
