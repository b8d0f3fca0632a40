"""Reads for skills: what a team has, and everything a skill's page shows."""

from django.db.models import Count, QuerySet

from skills.models import DemonstrationSet, EvalCase, EvalSuite, Skill, SkillChange


def skills_of_team(team) -> QuerySet:
    if team is None:
        return Skill.objects.none()
    return Skill.objects.filter(team=team).annotate(
        set_count=Count("demonstration_sets", distinct=True)).order_by("name")


def skill_page(skill: Skill) -> dict:
    """Description and settings, demonstration sets (newest first) with their eval suites and the latest
    suite's first cases. (Scores and jobs come from the evaluation and training apps.)"""
    sets = list(DemonstrationSet.objects.filter(skill=skill).select_related("created_by").order_by("-version"))
    suites = {s.demonstration_set_id: s for s in EvalSuite.objects.filter(skill=skill).annotate(
        case_count=Count("cases"))}
    for dset in sets:
        dset.suite = suites.get(dset.pk)
    latest_suite = EvalSuite.objects.filter(skill=skill).order_by("-pk").first()
    cases = list(EvalCase.objects.filter(suite=latest_suite)[:10]) if latest_suite else []
    changes = list(SkillChange.objects.filter(skill=skill).select_related("requested_by", "decided_by")[:6])
    return {
        "skill": skill,
        "sets": sets,
        "latest_suite": latest_suite,
        "cases": cases,
        # the rule change waiting for a second skill owner, and the last ones decided
        "pending_change": next((c for c in changes if c.status == SkillChange.Status.PENDING), None),
        "decided_changes": [c for c in changes if c.status != SkillChange.Status.PENDING][:5],
    }


def demonstration_sets_of(skill: Skill) -> QuerySet:
    return DemonstrationSet.objects.filter(skill=skill).order_by("-version")
