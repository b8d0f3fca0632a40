"""Skills and their uploads in the admin, each row scoped to the user's teams (teams.admin_scope): a skill's
demonstrations and eval cases are its team's. Moving a skill to another team is audited (teams.signals)."""

from django.contrib import admin

from config.admin_base import ReadOnlyAdmin
from skills.models import Demonstration, DemonstrationSet, EvalCase, EvalSuite, Skill, SkillChange
from teams.admin_scope import TeamScopedAdmin
from teams.permissions import is_platform_admin


@admin.register(Skill)
class SkillAdmin(TeamScopedAdmin):
    team_path = "team"
    list_display = ["name", "slug", "team", "scorer", "teacher_style", "tolerance", "min_gain", "status"]
    list_filter = ["team", "status", "teacher_style"]
    prepopulated_fields = {"slug": ["name"]}
    # The gate's rules change on the skill's Edit page (skills.services.skill_update: audited, and loosening
    # waits for a second skill owner) or by archiving there, never by a silent admin edit.
    readonly_fields = ["tolerance", "min_gain", "status", "scorer", "scorer_options"]

    def get_readonly_fields(self, request, obj=None):
        # Moving a skill hands its cases to another team: a platform admin's act (audited by teams.signals).
        moves = obj is None or is_platform_admin(request.user)
        return self.readonly_fields + ([] if moves else ["team"])


# Uploads are immutable: they are created by the upload service only.
@admin.register(DemonstrationSet)
class DemonstrationSetAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    team_path = "skill__team"


@admin.register(Demonstration)
class DemonstrationAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    team_path = "demonstration_set__skill__team"
    list_display = ["line", "demonstration_set", "prompt_text", "demonstration", "reference"]

    @admin.display(description="prompt")
    def prompt_text(self, row):
        return row.prompt[-1]["content"] if row.prompt else ""


@admin.register(EvalSuite)
class EvalSuiteAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    team_path = "skill__team"
    shared_path = "skill"  # the retention probes


@admin.register(EvalCase)
class EvalCaseAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    team_path = "suite__skill__team"
    shared_path = "suite__skill"
    list_display = ["key", "suite", "prompt_text", "reference"]

    @admin.display(description="prompt")
    def prompt_text(self, case):
        return case.prompt[-1]["content"] if case.prompt else ""


@admin.register(SkillChange)
class SkillChangeAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    """Rule changes are asked for and decided on the skill page; here they are read-only."""

    team_path = "skill__team"
