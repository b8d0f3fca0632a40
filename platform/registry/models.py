"""The model registry: base models, the single lineage of model versions, gates, promotion requests
and approvals. State changes go through registry.services."""

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q


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
    # The retention probes this lineage is gated on (imported with the base model, calibrated on it).
    probe_suite = models.OneToOneField(
        "skills.EvalSuite", null=True, blank=True, on_delete=models.PROTECT, related_name="base_model",
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
        CANDIDATE = "candidate"
        EVALUATING = "evaluating"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        PRODUCTION = "production"
        RETIRED = "retired"
        BLOCKED = "blocked", "Blocked by the gate"
        REJECTED = "rejected"
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
    checksums = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The gate's lifecycle (registry.services.gates): when it last (re)started, how often the reaper
    # re-enqueued it, and why it last failed.
    gate_started_at = models.DateTimeField(null=True, blank=True)
    gate_requeues = models.PositiveIntegerField(default=0)
    gate_error = models.TextField(blank=True)

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
    def job(self):
        """The training job that produced this version; None for a base import."""
        try:
            return self.training_job
        except ObjectDoesNotExist:
            return None

    @property
    def label(self) -> str:
        return f"v{self.number}" + (f" +{self.skill.slug}" if self.skill_id else " (base)")


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
        REJECTED = "rejected"
        # Its version went stale, blocked or rejected before anyone decided: nothing is left to approve.
        CLOSED = "closed", "Closed"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="promotion_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.TextField(blank=True, help_text="Why the request was closed without a decision.")

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
