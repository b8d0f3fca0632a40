"""Who may do what, and who may read what.

Roles are per team; a platform admin (a superuser, or the platform_admin role in any team) may act
everywhere. The team-privacy rule lives here too (`case_access`): every page, selector and admin that
shows a skill's cases asks it, so the rule is written once."""

from dataclasses import dataclass

from config.errors import AccreteError
from teams.models import ROLE_RANK, Membership, Role


class RoleRequired(AccreteError):
    """The acting user lacks the role an action needs in the team it touches."""


def is_platform_admin(user) -> bool:
    if user is None or not user.is_authenticated:
        return False
    return user.is_superuser or Membership.objects.filter(user=user, role=Role.PLATFORM_ADMIN).exists()


def role_in(user, team) -> str | None:
    if user is None or not user.is_authenticated:
        return None
    if is_platform_admin(user):
        return Role.PLATFORM_ADMIN
    membership = Membership.objects.filter(user=user, team=team).first()
    return membership.role if membership else None


def has_role(user, team, role: str) -> bool:
    current = role_in(user, team)
    return current is not None and ROLE_RANK[Role(current)] >= ROLE_RANK[Role(role)]


def require_role(user, team, role: str, *, action: str) -> None:
    if user is None:  # the system itself (a worker, the demo's scripted steps) acts with full rights
        return
    if not has_role(user, team, role):
        raise RoleRequired(
            f"{getattr(user, 'username', user)} may not {action} for team {team.name}: "
            f"it needs the {Role(role).label} role (ask a platform admin to grant it)."
        )


def is_machine(user) -> bool:
    """A team service account (tokens.ServiceAccount, reached by its reverse name: teams sits below tokens)."""
    return user is not None and _has_account(user)


def _has_account(user) -> bool:
    try:
        user.service_account  # noqa: B018 (a reverse one-to-one raises when there is none)
        return True
    except Exception:  # RelatedObjectDoesNotExist, or not a user at all
        return False


def person_behind(user):
    """The person accountable for `user`'s actions: the user itself, or the person who created the service
    account (four eyes compare people, so a machine a person made counts as that person)."""
    if _has_account(user):
        return user.service_account.created_by
    return user


def same_person(a, b) -> bool:
    """Whether two identities come down to one person (a service account counts as its creator)."""
    first, second = person_behind(a), person_behind(b)
    return first is not None and second is not None and first.pk == second.pk


@dataclass(frozen=True)
class CaseAccess:
    """The team-privacy rule for one user. A skill's case contents — prompts, references, the model's
    outputs on them — are visible to the skill's team and to platform admins only; other teams see the
    skill's name, owning team, scores and counts. Shared cases (the retention probes, no team) are visible
    to anyone in a team. A user in no team sees nothing."""

    everything: bool
    team_ids: frozenset[int]

    @property
    def in_a_team(self) -> bool:
        return self.everything or bool(self.team_ids)

    def sees(self, team_id: int | None) -> bool:
        """May this user read the cases of a skill owned by `team_id` (None: shared cases)?"""
        if self.everything:
            return True
        if team_id is None:
            return bool(self.team_ids)
        return team_id in self.team_ids


def case_access(user) -> CaseAccess:
    if user is None or not user.is_authenticated:
        return CaseAccess(everything=False, team_ids=frozenset())
    if is_platform_admin(user):
        return CaseAccess(everything=True, team_ids=frozenset())
    return CaseAccess(everything=False,
                      team_ids=frozenset(Membership.objects.filter(user=user).values_list("team_id", flat=True)))
