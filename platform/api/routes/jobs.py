"""Training jobs: start one (SDFT or SFT, with a config the engine validates), list, follow, cancel."""

from django.shortcuts import get_object_or_404
from ninja import Query, Router

from api import serialize
from api.paging import PageParams, page_of, paged
from api.problems import Problem
from api.routes.skills import skill_or_404
from api.schemas import EventOut, JobIn, JobOut, MetricOut
from skills.selectors import demonstration_sets_of
from training.models import MetricPoint, TrainingJob
from training.selectors import jobs_visible_to
from training.services import job_cancel_request, job_request

router = Router(tags=["jobs"])
NOT_CARRIED = {"method", "teacher_style", "anchor_pool_sha256"}  # job_request sets these itself


def job_or_404(request, pk: int) -> TrainingJob:
    return get_object_or_404(_jobs(request), pk=pk)


def _jobs(request):
    return jobs_visible_to(request.user).select_related("skill__team", "candidate", "requested_by", "parent_version")


@router.post("/jobs", response={201: JobOut}, summary="Start training a skill (contributors)")
def jobs_create(request, payload: JobIn):
    skill = skill_or_404(request, payload.skill)
    sets = demonstration_sets_of(skill)
    dset = sets.filter(pk=payload.demonstration_set).first() if payload.demonstration_set else sets.first()
    if dset is None:
        raise Problem(422, f"{skill.slug} has no demonstration set "
                      + (f"{payload.demonstration_set}" if payload.demonstration_set else "yet: upload one first")
                      + ".", code="validation-failed",
                      errors=[{"pointer": "#/demonstration_set", "field": "demonstration_set",
                               "message": "not a demonstration set of this skill"}])
    ignored = sorted(set(payload.config) & NOT_CARRIED)
    if ignored:
        raise Problem(422, f"config.{ignored[0]} is set by the platform (the method field, the skill's teacher "
                      "style): leave it out.", code="invalid-config",
                      errors=[{"pointer": f"#/config/{k}", "field": f"config.{k}", "message": "set by the platform"}
                              for k in ignored])
    job = job_request(skill=skill, demonstration_set=dset, method=payload.method, config=payload.config,
                      actor=request.user)
    return 201, serialize.job(_jobs(request).get(pk=job.pk))


@router.get("/jobs", response=page_of(JobOut), summary="Jobs of my teams, newest first")
def jobs_list(request, page: Query[PageParams], skill: str | None = None, status: str | None = None, method: str | None = None,
              team: str | None = None):
    qs = _jobs(request).order_by("-created_at", "-id")
    if skill:
        qs = qs.filter(skill__slug=skill)
    if status:
        qs = qs.filter(status=status)
    if method:
        qs = qs.filter(method=method)
    if team:
        qs = qs.filter(skill__team__slug=team)
    return paged(qs, serialize.job, page)


@router.get("/jobs/{pk}", response=JobOut, summary="A job: status, progress and its latest metrics")
def jobs_detail(request, pk: int):
    return serialize.job(job_or_404(request, pk))


@router.get("/jobs/{pk}/metrics", response=list[MetricOut], summary="Loss, KL, learning rate per logged step")
def jobs_metrics(request, pk: int, after_step: int = -1):
    job = job_or_404(request, pk)
    points = MetricPoint.objects.filter(job=job, step__gt=after_step).order_by("step")[:5000]
    return [{"step": p.step, "loss": p.loss, "kl": p.kl, "learning_rate": p.learning_rate,
             "tokens_per_second": p.tokens_per_second} for p in points]


@router.get("/jobs/{pk}/events", response=list[EventOut])
def jobs_events(request, pk: int):
    job = job_or_404(request, pk)
    return [{"at": e.created_at, "kind": e.kind, "message": e.message} for e in job.events.order_by("created_at", "id")]


@router.post("/jobs/{pk}/cancel", response=JobOut, summary="Cancel a job (it stops after its current step)")
def jobs_cancel(request, pk: int):
    job = job_cancel_request(job=job_or_404(request, pk), actor=request.user)
    return serialize.job(_jobs(request).get(pk=job.pk))
