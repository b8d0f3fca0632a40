"""The team-privacy rule in the Django admin. A platform admin sees every row; any other staff user sees
only the rows of their teams (and the shared rows: the base model, the retention probes), and picks only
their teams in a form. What a row's team is, each admin says in `team_path` (a lookup to a Team), and
`shared_path` where a null there means "shared, not a team's" (a probe suite has no skill)."""

from django.contrib import admin
from django.db.models import Q

from config.admin_base import ReadOnlyAdmin
from teams.models import Team
from teams.permissions import case_access


class TeamScopedAdmin(admin.ModelAdmin):
    team_path: str = ""  # e.g. "skill__team"; "" means the model itself is a Team
    shared_path: str = ""  # e.g. "suite__skill": rows where it is null are shared with every team

    def get_queryset(self, request):
        return scope_to_teams(super().get_queryset(request), request.user, self.team_path, self.shared_path)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Team and not case_access(request.user).everything:
            kwargs["queryset"] = Team.objects.filter(pk__in=case_access(request.user).team_ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def scope_to_teams(qs, user, team_path: str, shared_path: str = ""):
    access = case_access(user)
    if access.everything:
        return qs
    if not access.in_a_team:
        return qs.none()
    condition = Q(**{f"{team_path}__in" if team_path else "pk__in": access.team_ids})
    if shared_path:
        condition |= Q(**{f"{shared_path}__isnull": True})
    return qs.filter(condition)


def register_read_only(model, team_path: str, *, shared_path: str = "", **options) -> None:
    """Register `model` in the admin read-only, each row scoped to the user's teams through `team_path`."""
    attrs = {"team_path": team_path, "shared_path": shared_path, "__module__": model.__module__, **options}
    admin.site.register(model, type(f"{model.__name__}Admin", (TeamScopedAdmin, ReadOnlyAdmin), attrs))


@admin.display(description="prompt")
def last_prompt(row) -> str:
    """The last message of a row's prompt (what a person asked), for a list column."""
    return row.prompt[-1]["content"] if row.prompt else ""
