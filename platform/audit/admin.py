"""The audit log in the admin: read-only, and for superusers only — it spans every team, and the audit app
sits below teams, so it cannot scope rows to a user's teams. Platform admins read it at /audit/."""

from django.contrib import admin

from audit.models import AuditEvent
from config.admin_base import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_label", "action", "object_type", "object_id", "team"]
    list_filter = ["action", "team"]
    search_fields = ["actor_label", "action", "object_id"]

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_module_permission(self, request):
        return request.user.is_superuser
