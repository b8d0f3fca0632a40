"""Who may do what. Roles are per team; a platform admin (a superuser, or the platform_admin role in
any team) may act everywhere."""

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
