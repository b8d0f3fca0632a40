"""The API's request and response shapes (they make the OpenAPI schema)."""

from datetime import datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import Field


class TeamOut(Schema):
    slug: str
    name: str
    role: str | None


class MeOut(Schema):
    username: str
    is_platform_admin: bool
    service_account: bool
    token: str | None = Field(None, description="The token this call used (its public prefix), if any.")
    teams: list[TeamOut]


class SkillOut(Schema):
    id: int
    slug: str
    name: str
    team: str
    description: str
    scorer: str
    scorer_options: dict
    teacher_style: str
    tolerance: float
    min_gain: float
    max_new_tokens: int
    status: str
    created_at: datetime


class SkillIn(Schema):
    team: str = Field(..., description="The team's slug.", max_length=60)
    slug: str = Field(..., max_length=60)
    name: str = Field(..., max_length=120)
    description: str = Field("", max_length=20_000)
    scorer: str = Field("exact", max_length=20)
    scorer_options: dict = Field(default_factory=dict)
    teacher_style: Literal["inline", "turn"] = Field("inline", description="Skill.TeacherStyle")
    tolerance: float = Field(0.0, ge=0, le=1)
    min_gain: float = Field(0.0, ge=0, le=1)
    max_new_tokens: int = Field(64, ge=1, le=4096)


class SkillPatch(Schema):
    description: str | None = Field(None, max_length=20_000)
    scorer: str | None = Field(None, max_length=20)
    scorer_options: dict | None = None
    tolerance: float | None = Field(None, ge=0, le=1)
    min_gain: float | None = Field(None, ge=0, le=1)
    comment: str = Field("", max_length=2000, description="Why: shown to the skill owner who approves a loosening.")


class SkillChangeOut(Schema):
    applied: dict
    pending_change: int | None = Field(None, description="Id of the change waiting for another skill owner.")
    pending_fields: dict | None = None
    skill: SkillOut


class SkillChangeDecisionOut(Schema):
    id: int
    skill: str
    status: str
    fields: dict
    requested_by: str
    comment: str
    decided_by: str | None


class DemonstrationSetOut(Schema):
    id: int
    skill: str
    version: int
    filename: str
    format: str
    row_count: int
    train_count: int
    eval_count: int
    split_seed: int
    content_sha256: str
    created_at: datetime
    readiness: Literal["none", "done"]


class UploadProblem(Schema):
    file: str
    line: int | None
    field: str | None
    message: str


class UploadReportOut(Schema):
    ok: bool
    token: str | None = Field(None, description="Confirm with POST /uploads/{token}/confirm.")
    filename: str
    format: str | None
    row_count: int
    usable_row_count: int
    train_count: int
    eval_count: int
    problems: list[dict]
    problems_omitted: int
    eval_report: dict | None
    messages: list[str]
    demonstration_set: DemonstrationSetOut | None = None


class ReadinessOut(Schema):
    demonstration_set: int
    status: Literal["not_run", "queued", "done"]
    report: dict | None


class JobIn(Schema):
    skill: str = Field(..., description="The skill's slug.", max_length=60)
    method: Literal["sdft", "sft"] = "sdft"
    demonstration_set: int | None = Field(None, description="Its id; default: the skill's latest set.")
    config: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields; the rest keep defaults.")


class JobOut(Schema):
    id: int
    skill: str
    team: str
    method: str
    status: str
    cancel_requested: bool
    demonstration_set: int
    parent_version: int | None
    candidate_version: int | None
    step: int
    total_steps: int
    progress: float | None
    loss: float | None
    kl: float | None
    tokens_per_second: float | None
    eta_seconds: float | None
    error: str
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    config: dict


class MetricOut(Schema):
    step: int
    loss: float | None
    kl: float | None
    learning_rate: float | None
    tokens_per_second: float | None


class EventOut(Schema):
    at: datetime
    kind: str
    message: str


class VersionOut(Schema):
    number: int
    status: str
    skill: str | None
    team: str | None
    parent: int | None
    base_model: str
    created_at: datetime
    promoted_at: datetime | None
    gate_verdict: str | None
    gate_error: str
    job: int | None


class PromotionIn(Schema):
    comment: str = Field("", max_length=5000)


class DecisionIn(Schema):
    decision: Literal["approve", "reject"]
    comment: str = Field("", max_length=5000)


class PromotionRequestOut(Schema):
    id: int
    version: int
    skill: str
    team: str
    status: str
    requested_by: str
    comment: str
    created_at: datetime
    decided_at: datetime | None
    closed_reason: str


class TokenIn(Schema):
    name: str = Field(..., min_length=1, max_length=100)
    expires_in_days: int | None = Field(90, ge=1, le=3650, description="null: never expires.")


class TokenOut(Schema):
    prefix: str
    name: str
    user: str
    state: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(..., description="The token itself: shown this once, never again.")


class ServiceAccountIn(Schema):
    name: str = Field(..., min_length=1, max_length=60)
    role: Literal["viewer", "contributor", "skill_owner"]
    description: str = Field("", max_length=300)


class ServiceAccountOut(Schema):
    id: int
    name: str
    username: str
    team: str
    role: str | None
    active: bool
    created_at: datetime


class WebhookIn(Schema):
    team: str = Field(..., max_length=60)
    url: str = Field(..., max_length=500)
    events: list[str] = Field(default_factory=list, description="Event types; empty: every event.")
    description: str = Field("", max_length=200)


class WebhookPatch(Schema):
    url: str | None = Field(None, max_length=500)
    events: list[str] | None = None
    active: bool | None = None
    rotate_secret: bool = False


class WebhookOut(Schema):
    id: int
    team: str
    url: str
    events: list[str]
    active: bool
    description: str
    created_at: datetime


class NewWebhookOut(WebhookOut):
    secret: str = Field(..., description="The signing secret (whsec_…): verify the webhook-signature with it.")


class DeliveryOut(Schema):
    id: int
    endpoint: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    response_status: int | None
    latency_ms: int | None
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    payload: dict


class AuditOut(Schema):
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    team: str | None
    data: dict
