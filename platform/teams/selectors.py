"""Reads for teams: which teams a user sees."""

from django.db.models import QuerySet

from teams.models import Team
from teams.permissions import is_platform_admin


def teams_of(user) -> QuerySet:
    if is_platform_admin(user):
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user)
