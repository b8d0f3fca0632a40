"""Reads for training: the jobs a user sees, a job's page, and the dashboard."""

from django.db.models import QuerySet

from registry.models import ModelVersion
from registry.selectors import lineage, production_version, requests_awaiting, versions_visible_to
from teams.selectors import teams_of
from training.models import MetricPoint, TrainingJob


def jobs_visible_to(user) -> QuerySet:
    return TrainingJob.objects.filter(skill__team__in=teams_of(user)).select_related("skill", "parent_version")


def dashboard_summary(user) -> dict:
    """What the dashboard shows: production and its lineage, live jobs, what awaits this user, and the
    candidates the gate blocked lately (of the teams this user sees)."""
    current = production_version()
    chain = lineage(current)
    return {
        "production": current,
        "lineage": chain,
        "skills": [v.skill for v in chain if v.skill_id],
        "running_jobs": list(jobs_visible_to(user).filter(
            status__in=[TrainingJob.Status.VALIDATING, TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING])[:10]),
        "awaiting_me": list(requests_awaiting(user)[:10]),
        "blocked": list(versions_visible_to(user).filter(status=ModelVersion.Status.BLOCKED)
                        .select_related("gate").order_by("-created_at")[:5]),
    }


def job_page(job: TrainingJob) -> dict:
    """A job with its metric curves, events and the candidate it produced (if any)."""
    points = list(MetricPoint.objects.filter(job=job).order_by("step").values_list("step", "loss", "kl"))
    return {
        "job": job,
        "loss": [(step, loss) for step, loss, _ in points if loss is not None],
        "kl": [(step, kl) for step, _, kl in points if kl is not None],
        "events": list(job.events.order_by("created_at", "id")),
        "candidate": job.candidate,
        "anchoring": anchoring_summary(job),
    }


def anchoring_summary(job: TrainingJob) -> dict:
    """How a job held on to what the model knew, read from its config snapshot: anchor ratio and teacher,
    the anchor pool's hash, and which earlier skills it rehearsed."""
    from workers.engine.contract.config import DEFAULT_ANCHOR_RATIO

    config = job.config or {}
    if "anchor_ratio" not in config:
        return {"recorded": False}
    ratio = config["anchor_ratio"]
    ratio = DEFAULT_ANCHOR_RATIO.get(job.method, 0.0) if ratio is None else float(ratio)
    per_step = 0 if ratio == 0 else max(1, round(ratio * config.get("batch_size", 1)))
    return {"recorded": True, "anchored": ratio > 0, "ratio": ratio, "per_step": per_step,
            "method_default": config["anchor_ratio"] is None, "teacher": config.get("anchor_teacher", "ema"),
            "pool": (config.get("anchor_pool_sha256") or "")[:12], "rehearsal": config.get("rehearsal", "anchor"),
            "rehearsal_skills": config.get("rehearsal_skills"), "method": job.method}




def jobs_of_skill(skill, limit: int = 10) -> list[TrainingJob]:
    return list(TrainingJob.objects.filter(skill=skill).select_related("requested_by")[:limit])
