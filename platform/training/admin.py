"""Jobs are read-only in the admin: they change through training.services only."""

from django.contrib import admin

from config.admin_base import ReadOnlyAdmin
from training.models import JobEvent, MetricPoint, TrainingJob


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "kind", "message", "data"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    list_display = ["pk", "skill", "method", "status", "step", "total_steps", "parent_version", "created_at"]
    list_filter = ["status", "method"]
    inlines = [JobEventInline]


for model in (JobEvent, MetricPoint):
    admin.site.register(model, ReadOnlyAdmin)
