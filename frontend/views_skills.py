"""Skills of the current team: the list, a skill's page, creating one, and — for skill owners — editing its
rules (a loosening waits for another owner's approval), deciding on a pending change, archiving and
reactivating it."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from evaluation.selectors import score_history
from frontend.access import can, page, refused, skill_or_404
from frontend.forms import DecisionForm, SkillCreateForm, SkillEditForm
from skills.models import SkillChange
from skills.selectors import skill_page, skills_of_team
from skills.services import (
    SelfApprovalRefused,
    SkillEditRefused,
    skill_archive,
    skill_change_decide,
    skill_create,
    skill_create_authorize,
    skill_edit_authorize,
    skill_reactivate,
    skill_update,
)
from teams.models import Role
from training.selectors import jobs_of_skill


@page
def skill_list(request):
    return render(request, "frontend/skill_list.html", {
        "skills": skills_of_team(request.team),
        "can_create": can(request, Role.SKILL_OWNER),
    })


@page
def skill_detail(request, pk):
    skill = skill_or_404(request, pk)
    context = {**skill_page(skill), "history": list(score_history(skill)), "jobs": jobs_of_skill(skill)}
    context["can_contribute"] = can(request, Role.CONTRIBUTOR, skill.team)
    context["can_own"] = can(request, Role.SKILL_OWNER, skill.team)
    for change in filter(None, [context["pending_change"], *context["decided_changes"]]):
        change.shown = _names(change.fields)
    return render(request, "frontend/skill_detail.html", context)


@page
def skill_new(request):
    if request.team is None:
        return render(request, "frontend/no_team.html", status=403)
    form = SkillCreateForm(request.POST or None)
    if form.is_bound and form.is_valid():
        try:  # the service checks the role
            skill = skill_create(team=request.team, actor=request.user, **form.cleaned_data)
        except ValueError as exc:  # the scorer refuses its options
            form.add_error("scorer_options", str(exc))
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Skill “{skill.name}” created. Upload demonstrations to teach it.")
            return redirect("skill_detail", pk=skill.pk)
    else:
        # no service call here: the form is shown only to who may submit it
        skill_create_authorize(team=request.team, actor=request.user)
    status = 400 if request.method == "POST" else 200
    return render(request, "frontend/skill_new.html", {"form": form}, status=status)


@page
def skill_edit(request, pk):
    skill = skill_or_404(request, pk)
    skill_edit_authorize(skill=skill, actor=request.user)  # the form is shown only to who may submit it
    form = SkillEditForm(request.POST or None, initial=SkillEditForm.initial_for(skill))
    if form.is_bound and form.is_valid():
        try:
            update = skill_update(skill=skill, actor=request.user, **form.cleaned_data)
        except ValueError as exc:  # the scorer refuses its options
            form.add_error("scorer_options", str(exc))
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        except SkillEditRefused as exc:
            form.add_error(None, str(exc))
        else:
            if update.applied:
                messages.success(request, f"Changed {', '.join(_names(update.applied))}.")
            if update.pending is not None:
                messages.info(request, f"Waiting for another skill owner's approval: "
                                       f"{', '.join(_names(update.pending.fields))}.")
            if not update.applied and update.pending is None:
                messages.info(request, "Nothing was changed.")
            return redirect("skill_detail", pk=skill.pk)
    status = 400 if form.is_bound else 200
    return render(request, "frontend/skill_edit.html", {"skill": skill, "form": form}, status=status)


@page
@require_POST
def skill_change_decide_view(request, pk):
    change = get_object_or_404(SkillChange, pk=pk)
    skill = skill_or_404(request, change.skill_id)  # another team's change is a 404, like its skill
    change.skill = skill
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return refused(request, "Refused", "Choose approve or reject.", 400)
    try:
        change = skill_change_decide(change=change, actor=request.user, decision=form.cleaned_data["decision"],
                                     comment=form.cleaned_data["comment"])
    except SelfApprovalRefused as exc:
        return refused(request, "Four-eyes rule", str(exc), 403)
    except SkillEditRefused as exc:
        return refused(request, "Refused", str(exc), 409)
    messages.success(request, f"Change to {', '.join(_names(change.fields))} {change.status}.")
    return redirect("skill_detail", pk=skill.pk)


@page
@require_POST
def skill_archive_view(request, pk):
    return _status_change(request, pk, skill_archive,
                          "archived: the gate no longer scores it, and it cannot be trained until reactivated")


@page
@require_POST
def skill_reactivate_view(request, pk):
    return _status_change(request, pk, skill_reactivate, "reactivated: the next gate scores it again")


def _status_change(request, pk, service, done: str):
    skill = skill_or_404(request, pk)
    try:
        service(skill=skill, actor=request.user)
    except SkillEditRefused as exc:
        return refused(request, "Refused", str(exc), 409)
    messages.success(request, f"{skill.name} {done}.")
    return redirect("skill_detail", pk=skill.pk)


_LABELS = {"description": "description", "scorer": "scorer", "scorer_options": "scorer options",
           "tolerance": "tolerance", "min_gain": "minimum gain"}


def _names(changes: dict) -> list[str]:
    """"tolerance 5% → 10%" for each changed field (the description only by name)."""
    shown = []
    for name, change in changes.items():
        before, after = change["before"], change["after"]
        if name in ("tolerance", "min_gain"):
            shown.append(f"{_LABELS[name]} {before:.0%} → {after:.0%}")
        elif name == "description":
            shown.append("description")
        elif name == "scorer_options":
            shown.append(f"{_LABELS[name]} {json.dumps(before)} → {json.dumps(after)}")
        else:
            shown.append(f"{_LABELS[name]} {before} → {after}")
    return shown
