"""Skills of the current team: the list, a skill's page, and creating one (skill owners)."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from evaluation.selectors import score_history
from frontend.access import can, page, skill_or_404
from frontend.forms import SkillCreateForm
from skills.selectors import skill_page, skills_of_team
from skills.services import skill_create, skill_create_authorize
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
