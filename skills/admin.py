"""Skills and their uploads in the admin, each row scoped to the user's teams (teams.admin_scope): a skill's
demonstrations and eval cases are its team's. Moving a skill to another team is audited (teams.signals)."""

from django.contrib import admin

from skills.models import Demonstration, DemonstrationSet, EvalCase, EvalSuite, Skill, SkillChange
from teams.admin_scope import TeamScopedAdmin, last_prompt, register_read_only
from teams.permissions import is_platform_admin


@admin.register(Skill)
class SkillAdmin(TeamScopedAdmin):
    team_path = "team"
    list_display = ["name", "slug", "team", "scorer", "teacher_style", "tolerance", "min_gain", "status"]
    list_filter = ["team", "status", "teacher_style"]
    # The gate's rules change on the skill's Edit page (skills.services.skill_update: audited, and loosening
    # waits for a second skill owner) or by archiving there, never by a silent admin edit.
    # Everything the gate reads or the skill page edits (audited) is read-only here; a skill is created on
    # the Skills page (skill_create, audited).
    readonly_fields = ["slug", "name", "description", "tolerance", "min_gain", "status", "scorer", "scorer_options",
                       "teacher_style", "max_new_tokens", "created_by"]

    def has_add_permission(self, request):
        return False

    def get_readonly_fields(self, request, obj=None):
        # Moving a skill hands its cases to another team: a platform admin's act (audited by teams.signals).
        return self.readonly_fields + ([] if is_platform_admin(request.user) else ["team"])


# Uploads are immutable (created by the upload service only); rule changes are asked for and decided on
# the skill page. All read-only here.
register_read_only(DemonstrationSet, "skill__team")
register_read_only(Demonstration, "demonstration_set__skill__team",
                   list_display=["line", "demonstration_set", last_prompt, "demonstration", "reference"])
register_read_only(EvalSuite, "skill__team", shared_path="skill")  # the retention probes are shared
register_read_only(EvalCase, "suite__skill__team", shared_path="suite__skill",
                   list_display=["key", "suite", last_prompt, "reference"])
register_read_only(SkillChange, "skill__team")
