"""Django admin for the registry. State lives in services: versions, gates and approvals are read-only
here, and the only way to change a version's state is an action that calls a service — so a blocked
candidate cannot be promoted from the admin either."""

from django.contrib import admin, messages

from audit.services import audit_record
from config.admin_base import ReadOnlyAdmin
from config.errors import AccreteError
from registry.errors import TransitionError
from registry.models import Approval, BaseModel, GateResult, ModelVersion, PromotionRequest
from registry.services.approvals import approval_decide
from registry.services.versions import require_awaiting_approval, version_rollback


@admin.register(BaseModel)
class BaseModelAdmin(ReadOnlyAdmin):
    """Read-only but for the probe tolerance of its lineage, which an admin may tune (audited)."""

    list_display = ["name", "source", "architecture", "num_parameters", "context_length", "probe_tolerance",
                    "sha256", "created_at"]
    fields = ["name", "source", "source_path", "artifact_path", "sha256", "architecture", "num_parameters",
              "context_length", "probe_tolerance", "created_at", "created_by"]
    readonly_fields = [f for f in fields if f != "probe_tolerance"]

    def has_change_permission(self, request, obj=None):
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "probe_tolerance" in form.changed_data:
            audit_record(actor=request.user, action="base_model.probe_tolerance_changed", obj=obj,
                         data={"probe_tolerance": obj.probe_tolerance})


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["number", "skill", "parent", "status", "created_at", "promoted_at", "promoted_by"]
    list_filter = ["status"]
    actions = ["promote", "rollback"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # the changelist (for actions) but no edit form

    @admin.action(description="Approve and promote (candidates that passed the gate, four-eyes)")
    def promote(self, request, queryset):
        for version in queryset:
            try:
                require_awaiting_approval(version)
                open_request = PromotionRequest.objects.filter(version=version, status="open").first()
                if open_request is None:
                    raise TransitionError(f"v{version.number} has no open promotion request: its requester asks "
                                          "for promotion first, then another skill owner approves.")
                approval_decide(request=open_request, approver=request.user, decision="approve",
                                comment="Approved in the admin.")
                self.message_user(request, f"v{version.number} is now production.")
            except AccreteError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)

    @admin.action(description="Roll production back to this retired version")
    def rollback(self, request, queryset):
        for version in queryset:
            try:
                version_rollback(version=version, actor=request.user)
                self.message_user(request, f"Production rolled back to v{version.number}.")
            except AccreteError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)


for model in (GateResult, PromotionRequest, Approval):
    admin.site.register(model, ReadOnlyAdmin)
