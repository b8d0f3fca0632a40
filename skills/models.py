"""Skills, the changes to their gate rules waiting for a second pair of eyes, their immutable demonstration
sets and the frozen eval suites that gates score."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Skill(models.Model):
    class TeacherStyle(models.TextChoices):
        INLINE = "inline", "Inline (the paper's template: demonstration inside the question)"
        TURN = "turn", "Turn (demonstration as a prior example turn)"

    class Status(models.TextChoices):
        ACTIVE = "active"
        ARCHIVED = "archived"

    team = models.ForeignKey("teams.Team", on_delete=models.PROTECT, related_name="skills")
    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    scorer = models.CharField(max_length=20, default="exact")
    scorer_options = models.JSONField(default=dict, blank=True)
    teacher_style = models.CharField(max_length=8, choices=TeacherStyle.choices, default=TeacherStyle.INLINE)
    tolerance = models.FloatField(default=0.0, help_text="Largest score drop (0..1) the gate accepts on this skill.")
    min_gain = models.FloatField(default=0.0, help_text="Least improvement (0..1) a candidate adding this skill must show.")
    max_new_tokens = models.PositiveIntegerField(default=64, help_text="Generation budget when scoring this skill.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(tolerance__gte=0) & Q(tolerance__lte=1), name="tolerance_in_0_1"),
            models.CheckConstraint(condition=Q(min_gain__gte=0) & Q(min_gain__lte=1), name="min_gain_in_0_1"),
        ]

    def __str__(self) -> str:
        return self.name


class SkillChange(models.Model):
    """An edit of a skill's gate rules that could let more through — a larger tolerance, a smaller minimum
    gain, another scorer — waiting for a second skill owner. Edits that tighten apply at once and leave only
    an audit event; this row is the four-eyes step of the others."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for approval"
        APPROVED = "approved"
        REJECTED = "rejected"

    skill = models.ForeignKey(Skill, on_delete=models.CASCADE, related_name="changes")
    # {"tolerance": {"before": 0.05, "after": 0.1}, ...}: approving applies "after" if the skill still has "before"
    fields = models.JSONField()
    comment = models.TextField(blank=True, help_text="Why the requester wants it.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["skill"], condition=Q(status="pending"), name="one_pending_change_per_skill"),
            # the database itself refuses a change approved by the person who asked for it
            models.CheckConstraint(condition=~Q(status="approved") | ~Q(decided_by=F("requested_by")),
                                   name="skill_change_approved_by_another"),
            models.CheckConstraint(condition=Q(status="pending") | Q(decided_by__isnull=False),
                                   name="a_decided_skill_change_names_its_decider"),
        ]

    def __str__(self) -> str:
        return f"{self.skill.slug}: {', '.join(self.fields)} ({self.status})"


class DemonstrationSet(models.Model):
    """One upload of a skill's demonstrations. Immutable once created."""

    skill = models.ForeignKey(Skill, on_delete=models.PROTECT, related_name="demonstration_sets")
    version = models.PositiveIntegerField()
    content_sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=20)
    filename = models.CharField(max_length=255, help_text="Shown to people only; never used as a path.")
    row_count = models.PositiveIntegerField()
    train_count = models.PositiveIntegerField()
    eval_count = models.PositiveIntegerField()
    split_seed = models.IntegerField()
    stats = models.JSONField(default=dict, blank=True)
    # The readiness check's report (teacher vs student on a sample), filled in once by a worker.
    readiness = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    # The browser's pending-upload token this set was saved from: confirming it again (a double click, a
    # resent form) finds this set instead of failing. Null for the CLI's uploads (unique allows many nulls).
    upload_token = models.CharField(max_length=32, null=True, blank=True, unique=True, editable=False)

    class Meta:
        ordering = ["skill", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["skill", "version"], name="one_version_number_per_skill"),
            models.UniqueConstraint(fields=["skill", "content_sha256"], name="same_content_uploaded_once"),
        ]

    def __str__(self) -> str:
        return f"{self.skill.slug} demonstrations v{self.version}"


class Demonstration(models.Model):
    """A training row. Held-out rows become EvalCases instead, so they can never reach training."""

    demonstration_set = models.ForeignKey(DemonstrationSet, on_delete=models.CASCADE, related_name="rows")
    line = models.PositiveIntegerField()
    prompt = models.JSONField(help_text="Chat messages ending with a user turn.")
    demonstration = models.TextField()
    reference = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["line"]


class EvalSuite(models.Model):
    class Kind(models.TextChoices):
        SKILL = "skill"
        PROBES = "probes", "Retention probes"

    class Source(models.TextChoices):
        SPLIT = "split", "Held out from the demonstrations"
        FILE = "file", "Explicit eval file"
        BUILTIN = "builtin", "Built-in probes"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    source = models.CharField(max_length=8, choices=Source.choices)
    skill = models.ForeignKey(Skill, null=True, blank=True, on_delete=models.PROTECT, related_name="eval_suites")
    demonstration_set = models.OneToOneField(
        DemonstrationSet, null=True, blank=True, on_delete=models.PROTECT, related_name="eval_suite"
    )
    content_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="skill") & Q(skill__isnull=False)) | (Q(kind="probes") & Q(skill__isnull=True)),
                name="a_skill_suite_has_its_skill_and_probes_none",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.PROBES:
            return "retention probes"
        return f"{self.skill.slug} eval ({self.get_source_display().lower()})"


class EvalCase(models.Model):
    suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="cases")
    key = models.CharField(max_length=80)
    line = models.PositiveIntegerField(null=True, blank=True)
    category = models.CharField(max_length=40, blank=True)
    prompt = models.JSONField(help_text="Chat messages ending with a user turn.")
    reference = models.TextField()
    # Probes carry their own scorer; a skill's cases use the skill's scorer.
    scorer = models.CharField(max_length=20, blank=True)
    scorer_options = models.JSONField(default=dict, blank=True)
    # Retention probes the base model gets wrong do not count: only a loss is forgetting.
    counted = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["suite", "key"], name="case_key_unique_in_suite")]
