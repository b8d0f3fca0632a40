"""Training: the start form, the jobs list, a job's live page (polled fragment) and cancelling."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from frontend.access import can, job_or_404, page, skill_or_404
from frontend.forms import TrainForm
from skills.selectors import demonstration_sets_of
from teams.models import Role
from training.selectors import job_page, jobs_visible_to
from training.services import job_cancel_request, job_request, job_request_authorize
from workers.engine.contract.config import ConfigError


@page
def job_list(request):
    jobs = jobs_visible_to(request.user).select_related("requested_by", "candidate")
    if request.GET.get("team") != "all" and request.team is not None:
        jobs = jobs.filter(skill__team=request.team)
    return render(request, "frontend/job_list.html", {"jobs": jobs[:100]})


@page
def job_start(request, pk):
    skill = skill_or_404(request, pk)
    form = TrainForm(request.POST or None, demonstration_sets=demonstration_sets_of(skill))
    if form.is_bound and form.is_valid():
        try:  # the service checks the role
            job = job_request(skill=skill, demonstration_set=form.cleaned_data["demonstration_set"],
                              method=form.cleaned_data["method"], config=form.config(), actor=request.user)
        except ConfigError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Training job {job.pk} queued: it starts from the production model "
                                      "when a training worker picks it up.")
            return redirect("job_detail", pk=job.pk)
    else:
        # no service call here: the form is shown only to who may submit it
        job_request_authorize(skill=skill, actor=request.user)
    status = 400 if request.method == "POST" else 200
    return render(request, "frontend/job_start.html", {"skill": skill, "form": form,
                                                       "has_sets": demonstration_sets_of(skill).exists()},
                  status=status)


def _job_context(request, pk) -> dict:
    job = job_or_404(request, pk)
    return {**job_page(job), "can_cancel": job.is_active and can(request, Role.CONTRIBUTOR, job.skill.team)}


@page
def job_detail(request, pk):
    return render(request, "frontend/job_detail.html", _job_context(request, pk))


@page
def job_progress(request, pk):
    """The live part of the job page, polled every 2 s while the job is active."""
    return render(request, "frontend/_job_progress.html", _job_context(request, pk))


@page
@require_POST
def job_cancel(request, pk):
    job = job_or_404(request, pk)
    job = job_cancel_request(job=job, actor=request.user)
    messages.info(request, f"Cancel requested for job {job.pk}" + (
        "; it was cancelled before it started." if job.status == job.Status.CANCELLED
        else "; the worker stops after its current step."))
    return redirect("job_detail", pk=job.pk)
