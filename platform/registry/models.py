"""The model registry: teams, base models, the single lineage of model versions, training jobs,
evaluations, gates, approvals and the audit log. State changes go through registry.services."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    CONTRIBUTOR = "contributor", "Contributor"
    SKILL_OWNER = "skill_owner", "Skill owner"
    PLATFORM_ADMIN = "platform_admin", "Platform admin"


# What each role may do; a role includes the powers of the roles before it.
ROLE_RANK = {Role.VIEWER: 0, Role.CONTRIBUTOR: 1, Role.SKILL_OWNER: 2, Role.PLATFORM_ADMIN: 3}


class Team(models.Model):
    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"

    def allows(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


class BaseModel(models.Model):
    class Source(models.TextChoices):
        GGUF = "gguf", "GGUF file"
        HF = "hf", "Hugging Face folder"

    name = models.CharField(max_length=120, unique=True)
    source = models.CharField(max_length=8, choices=Source.choices)
    source_path = models.CharField(max_length=500, help_text="Where it was imported from.")
    artifact_path = models.CharField(max_length=500, help_text="Relative to ACCRETE_ARTIFACTS.")
    sha256 = models.CharField(max_length=64)
    architecture = models.CharField(max_length=80, blank=True)
    num_parameters = models.BigIntegerField(default=0)
    context_length = models.IntegerField(default=2048)
    # The probes are calibrated per base model, and so is how far their score may drop: a small model's
    # answers shift under any update. None: ACCRETE_PROBE_TOLERANCE.
    probe_tolerance = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Largest retention-probe drop the gate accepts for this lineage (0.1 = 10 points); "
                  "empty: the platform default (ACCRETE_PROBE_TOLERANCE).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    def __str__(self) -> str:
        return self.name

    @property
    def effective_probe_tolerance(self) -> float:
        return self.probe_tolerance if self.probe_tolerance is not None else settings.ACCRETE_PROBE_TOLERANCE


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        EVALUATING = "evaluating", "Evaluating"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        PRODUCTION = "production", "Production"
        RETIRED = "retired", "Retired"
        BLOCKED = "blocked", "Blocked by the gate"
        REJECTED = "rejected", "Rejected"
        STALE = "stale", "Stale (production moved)"
        FAILED = "failed", "Evaluation failed"

    number = models.PositiveIntegerField(unique=True)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="versions")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    skill = models.ForeignKey(
        "skills.Skill", null=True, blank=True, on_delete=models.PROTECT, related_name="versions",
        help_text="The skill this version added (none for a base import).",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CANDIDATE)
    artifact_path = models.CharField(max_length=500, help_text="Merged weights, relative to ACCRETE_ARTIFACTS.")
    adapter_path = models.CharField(max_length=500, blank=True)
    # One job yields at most one version: a task delivered twice cannot create two.
    training_job = models.OneToOneField(
        "TrainingJob", null=True, blank=True, on_delete=models.PROTECT, related_name="candidate"
    )
    checksums = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-number"]
        constraints = [
            # The single lineage: the database refuses a second production version.
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="production"), name="at_most_one_production_version"
            ),
            models.CheckConstraint(condition=~Q(parent=F("id")), name="version_is_not_its_own_parent"),
        ]

    def __str__(self) -> str:
        return f"v{self.number}"

    @property
    def label(self) -> str:
        return f"v{self.number}" + (f" +{self.skill.slug}" if self.skill_id else " (base)")


class TrainingJob(models.Model):
    class Status(models.TextChoices):
        VALIDATING = "validating", "Validating"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Method(models.TextChoices):
        SDFT = "sdft", "SDFT (self-distillation)"
        SFT = "sft", "SFT baseline"

    skill = models.ForeignKey("skills.Skill", on_delete=models.PROTECT, related_name="jobs")
    demonstration_set = models.ForeignKey("skills.DemonstrationSet", on_delete=models.PROTECT, related_name="jobs")
    parent_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs_started",
        help_text="The production version when the job started running.",
    )
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.SDFT)
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.VALIDATING)
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


class EvalRun(models.Model):
    """A version scored on one eval suite. Scores of a version never change once computed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="eval_runs")
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


class GateResult(models.Model):
    class Verdict(models.TextChoices):
        PASS = "pass", "Pass"
        BLOCK = "block", "Block"

    candidate = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="gate")
    baseline = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    rows = models.JSONField(default=list, help_text="Per skill/probe suite: before, after, delta, tolerance, verdict.")
    flipped = models.JSONField(default=list, help_text="Cases that flipped pass→fail or fail→pass.")
    reasons = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)


class PromotionRequest(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="promotion_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version"], condition=Q(status="open"), name="one_open_request_per_version")
        ]


class Approval(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    request = models.ForeignKey(PromotionRequest, on_delete=models.CASCADE, related_name="approvals")
    # Copied from the request so the database itself can refuse self-approval.
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(approver=F("requester")), name="approver_is_not_requester")]


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit log is append-only: events cannot be updated.")

    def delete(self):
        raise PermissionError("The audit log is append-only: events cannot be deleted.")


class AuditEvent(models.Model):
    """Append-only record of every state change."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=150, help_text="Username, or the system component.")
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=60)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    data = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("The audit log is append-only: events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit log is append-only: events cannot be deleted.")
