"""Evaluation runs: a model version scored on one eval suite, with each case's output."""

from django.db import models


class EvalRun(models.Model):
    """A version scored on one eval suite. Scores of a version never change once computed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued for an eval worker"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="eval_runs")
    suite = models.ForeignKey("skills.EvalSuite", on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    score = models.FloatField(null=True, blank=True)
    passed = models.IntegerField(default=0)
    total = models.IntegerField(default=0)
    error = models.TextField(blank=True)
    seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "suite"], name="one_eval_run_per_version_suite")]


class CaseResult(models.Model):
    eval_run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="cases")
    case = models.ForeignKey("skills.EvalCase", on_delete=models.PROTECT, related_name="results")
    output = models.TextField()
    passed = models.BooleanField()
    score = models.FloatField()
    extracted = models.TextField(null=True, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["eval_run", "case"], name="one_result_per_case")]
