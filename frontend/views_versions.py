"""Model versions: the lineage, a version's scorecard and gate report, retraining a stale or blocked
candidate, asking for promotion, and the forgetting matrix (page and JSON)."""

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from frontend.access import can, page, version_or_404
from frontend.forms import TrainForm
from registry.models import ModelVersion
from registry.selectors import (
    forgetting_matrix_for,
    lineage,
    production_version,
    version_page,
    versions_visible_to,
)
from registry.services.approvals import promotion_request_create
from registry.services.gates import gate_rerun
from registry.services.remedies import remedy_of_gate
from skills.selectors import demonstration_sets_of
from teams.models import Role
from training.services import job_request, job_request_authorize


@page
def version_list(request):
    versions = versions_visible_to(request.user).select_related("training_job", "promoted_by", "gate")
    return render(request, "frontend/version_list.html", {
        "versions": versions.order_by("-number")[:200], "lineage": lineage(production_version()),
    })


@page
def version_detail(request, pk):
    version = version_or_404(request, pk)
    context = version_page(version, request.user)
    team = version.skill.team if version.skill_id else None
    context["can_contribute"] = team is not None and can(request, Role.CONTRIBUTOR, team)
    context["can_rerun_gate"] = (version.status == ModelVersion.Status.FAILED and team is not None
                                 and can(request, Role.SKILL_OWNER, team))
    return render(request, "frontend/version_detail.html", context)


@page
@require_POST
def version_rerun_gate(request, pk):
    """A skill owner re-runs the gate of a version whose gate failed (the service checks role and state)."""
    version = version_or_404(request, pk)
    gate_rerun(version=version, actor=request.user)
    messages.success(request, f"The gate of {version} is running again; this page shows its verdict when it is done.")
    return redirect("version_detail", pk=version.pk)


@page
@require_POST
def version_retrain(request, pk):
    """A stale candidate is retrained as it was, on the new production; a blocked one opens the training
    form pre-filled with the gate's retention remedy, for the user to review and start."""
    version = version_or_404(request, pk)
    job = version.job
    if job is not None and version.status == ModelVersion.Status.BLOCKED:
        return _retrain_with_retention(request, version)
    if job is None or version.status != ModelVersion.Status.STALE:
        messages.error(request, f"{version} is not a stale or blocked candidate: only those are retrained from here.")
        return redirect("version_detail", pk=version.pk)
    new_job = job_request(skill=job.skill, demonstration_set=job.demonstration_set, method=job.method,
                          config=_user_config(job.config), actor=request.user)
    messages.success(request, f"Retraining {job.skill.name} on the current production model as job {new_job.pk}.")
    return redirect("job_detail", pk=new_job.pk)


def _retrain_with_retention(request, version):
    job = version.job
    # no service call here: the pre-filled form is shown only to who may submit it
    job_request_authorize(skill=job.skill, actor=request.user)
    remedy = remedy_of_gate(version.gate) if hasattr(version, "gate") else None
    if remedy is None or not remedy.retrains_with_retention:
        messages.error(request, f"The gate of {version} suggests no retention remedy: "
                                + (remedy.action if remedy else "it has no gate report."))
        return redirect("version_detail", pk=version.pk)
    sets = demonstration_sets_of(job.skill)
    form = TrainForm(initial=TrainForm.initial_for_retrain(job=job, remedy=remedy), demonstration_sets=sets)
    return render(request, "frontend/job_start.html", {"skill": job.skill, "form": form, "has_sets": sets.exists(),
                                                       "retrain_of": version, "remedy": remedy})


def _user_config(snapshot: dict) -> dict:
    # What job_request sets itself (method, teacher style, the anchor pool's hash) is not carried over.
    return {k: v for k, v in snapshot.items() if k not in TrainForm.NOT_CARRIED}


@page
@require_POST
def version_request_promotion(request, pk):
    version = version_or_404(request, pk)
    if version.skill_id is None:
        messages.error(request, "A base version is not promoted through approvals.")
        return redirect("version_detail", pk=version.pk)
    promotion_request_create(version=version, actor=request.user, comment=request.POST.get("comment", ""))
    messages.success(request, f"Promotion of {version} requested: another skill owner of "
                              f"{version.skill.team.name} must approve it.")
    return redirect("version_detail", pk=version.pk)


@page
def matrix(request):
    return render(request, "frontend/matrix.html", {"matrix": forgetting_matrix_for(request.user)})


@page
def matrix_json(request):
    return JsonResponse(forgetting_matrix_for(request.user))
