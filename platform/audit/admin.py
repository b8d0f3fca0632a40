from django.contrib import admin

from audit.models import AuditEvent
from config.admin_base import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_label", "action", "object_type", "object_id", "team"]
    list_filter = ["action", "team"]
    search_fields = ["actor_label", "action", "object_id"]
