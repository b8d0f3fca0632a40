"""Jobs are read-only in the admin: they change through training.services only. Each is its skill's
team's (teams.admin_scope)."""

from django.contrib import admin

from config.admin_base import ReadOnlyAdmin
from teams.admin_scope import TeamScopedAdmin, register_read_only
from training.models import JobEvent, MetricPoint, TrainingJob


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "kind", "message", "data"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingJob)
class TrainingJobAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    team_path = "skill__team"
    list_display = ["pk", "skill", "method", "status", "step", "total_steps", "parent_version", "created_at"]
    list_filter = ["status", "method"]
    inlines = [JobEventInline]


register_read_only(JobEvent, "job__skill__team")
register_read_only(MetricPoint, "job__skill__team")
