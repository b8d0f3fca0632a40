"""Training jobs (validating → queued → running → succeeded | failed | cancelled), their events and metric curves."""

from django.conf import settings
from django.db import models


class TrainingJob(models.Model):
    class Status(models.TextChoices):
        VALIDATING = "validating"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Method(models.TextChoices):
        SDFT = "sdft", "SDFT (self-distillation)"
        SFT = "sft", "SFT baseline"

    skill = models.ForeignKey("skills.Skill", on_delete=models.PROTECT, related_name="jobs")
    demonstration_set = models.ForeignKey("skills.DemonstrationSet", on_delete=models.PROTECT, related_name="jobs")
    parent_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs_started",
        help_text="The production version when the job started running.",
    )
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.SDFT)
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.VALIDATING)
    # One job yields at most one version: a task delivered twice cannot create two.
    candidate = models.OneToOneField(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="training_job",
        help_text="The candidate version this job produced.",
    )
    cancel_requested = models.BooleanField(default=False)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    step = models.IntegerField(default=0)
    total_steps = models.IntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    kl = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.IntegerField(default=0)
    # When its latest train message was sent, and how often the reaper re-sent it (a lost message).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    reenqueues = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.method} {self.skill_id})"

    @property
    def progress_percent(self) -> int:
        if not self.total_steps:
            return 100 if self.status == self.Status.SUCCEEDED else 0
        return min(100, round(100 * self.step / self.total_steps))

    @property
    def is_active(self) -> bool:
        return self.status in {self.Status.VALIDATING, self.Status.QUEUED, self.Status.RUNNING}


class JobEvent(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=40)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]


class MetricPoint(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metric_points")
    step = models.IntegerField()
    loss = models.FloatField(null=True)
    kl = models.FloatField(null=True)
    learning_rate = models.FloatField(null=True)
    tokens_per_second = models.FloatField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step"]
        constraints = [models.UniqueConstraint(fields=["job", "step"], name="one_metric_point_per_step")]
