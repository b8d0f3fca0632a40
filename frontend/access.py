"""Who sees and does what in the browser: the current team, team-scoped lookups, and what to show.

Objects of a team the user is not in answer 404 (their existence is not disclosed). Roles are checked
once, by the service that acts (it raises RoleRequired, naming the role it needs); `page` turns that
into a 403 page. `can` only decides which buttons to show. The production lineage (base versions and
every version that was production) belongs to everyone in a team; a user in no team gets the "not in a
team yet" page instead of any version."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from registry.errors import SelfApprovalError, TransitionError
from registry.models import ModelVersion, PromotionRequest
from registry.selectors import versions_visible_to
from skills.models import DemonstrationSet, Skill
from teams.models import Role, Team
from teams.permissions import RoleRequired, case_access, has_role, is_platform_admin, role_in
from teams.selectors import teams_of
from training.models import TrainingJob

SESSION_TEAM = "team_id"


class NotInATeam(Exception):
    """The user belongs to no team: there is nothing of the platform they may see yet."""


def current_team(request) -> Team | None:
    """The team picked in the switcher (session "team_id"), else the user's first team."""
    teams = teams_of(request.user).order_by("name")
    chosen = request.session.get(SESSION_TEAM)
    if chosen is not None:
        team = teams.filter(pk=chosen).first()
        if team is not None:
            return team
    return teams.first()


def role_label(user, team) -> str:
    role = role_in(user, team) if team is not None else None
    return Role(role).label if role else "none"


def can(request, role: str, team=None) -> bool:
    team = team if team is not None else request.team
    return team is not None and has_role(request.user, team, role)


def skill_or_404(request, pk) -> Skill:
    return get_object_or_404(Skill.objects.select_related("team"), pk=pk, team__in=teams_of(request.user))


def demonstration_set_or_404(request, pk) -> DemonstrationSet:
    return get_object_or_404(DemonstrationSet.objects.select_related("skill", "skill__team"), pk=pk,
                             skill__team__in=teams_of(request.user))


def job_or_404(request, pk) -> TrainingJob:
    return get_object_or_404(
        TrainingJob.objects.select_related("skill", "skill__team", "demonstration_set", "parent_version",
                                           "requested_by"),
        pk=pk, skill__team__in=teams_of(request.user))


def version_or_404(request, pk) -> ModelVersion:
    if not case_access(request.user).in_a_team:
        raise NotInATeam
    return get_object_or_404(versions_visible_to(request.user).select_related(
        "skill__team", "base_model", "training_job", "promoted_by"), pk=pk)


def promotion_request_or_404(request, pk) -> PromotionRequest:
    return get_object_or_404(PromotionRequest.objects.select_related("version", "version__skill__team"), pk=pk,
                             version__skill__team__in=teams_of(request.user))


def refused(request, title: str, message: str, status: int):
    return render(request, "frontend/refused.html", {"title": title, "message": message}, status=status)


def attach_nav(request) -> None:
    request.team = current_team(request)
    request.teams = teams_of(request.user).order_by("name")
    request.is_admin = is_platform_admin(request.user)
    # The team-privacy rule's empty state: a user in no team (and no platform admin) sees nothing yet.
    request.in_a_team = request.is_admin or request.teams.exists()
    request.role_label = role_label(request.user, request.team)


def page(view):
    """Login required; the request carries the nav's context (team, teams, role, admin flag); errors a
    service raises on purpose become a page that says what was refused and why (a missing role: 403,
    with the service's message naming the role)."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        attach_nav(request)
        try:
            return view(request, *args, **kwargs)
        except RoleRequired as exc:
            return refused(request, "Not allowed", str(exc), 403)
        except SelfApprovalError as exc:
            return refused(request, "Four-eyes rule", str(exc), 403)
        except TransitionError as exc:
            return refused(request, "Refused", str(exc), 409)
        except NotInATeam:
            return render(request, "frontend/no_team.html", status=403)
        except Http404:
            return refused(request, "Not found", "There is nothing here — or it belongs to a team you are not "
                           "a member of.", 404)

    return wrapper
