"""Django admin for the registry. State lives in services: versions, gates and approvals are read-only
here, and the only way to change a version's state is an action that calls a service — so a blocked
candidate cannot be promoted from the admin either.

Rows follow the team-privacy rule: a staff user who is not a platform admin sees the versions
registry.selectors.versions_visible_to gives them (the production lineage and their teams' candidates),
their scores, and case outputs and flipped cases only of their teams' skills. The evaluation app's
EvalRun and CaseResult are registered here for that reason: their visibility is the versions'."""

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from audit.services import audit_record
from config.admin_base import ReadOnlyAdmin
from config.errors import AccreteError
from evaluation.models import CaseResult, EvalRun
from registry.errors import TransitionError
from registry.models import Approval, BaseModel, GateResult, ModelVersion, PromotionRequest
from registry.selectors import gate_report, versions_visible_to
from registry.services.approvals import approval_decide
from registry.services.versions import require_awaiting_approval, version_rollback
from teams.admin_scope import TeamScopedAdmin, scope_to_teams
from teams.permissions import is_platform_admin


@admin.register(BaseModel)
class BaseModelAdmin(ReadOnlyAdmin):
    """Read-only but for the probe tolerance of its lineage, which an admin may tune (audited)."""

    list_display = ["name", "source", "architecture", "num_parameters", "context_length", "probe_tolerance",
                    "sha256", "created_at"]
    fields = ["name", "source", "source_path", "artifact_path", "sha256", "architecture", "num_parameters",
              "context_length", "probe_tolerance", "created_at", "created_by"]
    readonly_fields = [f for f in fields if f != "probe_tolerance"]

    def has_change_permission(self, request, obj=None):
        # The probe tolerance holds every team's lineage: a platform admin's setting (audited below).
        return is_platform_admin(request.user) and admin.ModelAdmin.has_change_permission(self, request, obj)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "probe_tolerance" in form.changed_data:
            audit_record(actor=request.user, action="base_model.probe_tolerance_changed", obj=obj,
                         data={"probe_tolerance": obj.probe_tolerance})


class VisibleVersionsAdmin(ReadOnlyAdmin):
    """Rows whose version (`version_path`) the user may see."""

    version_path = ""

    def get_queryset(self, request):
        visible = versions_visible_to(request.user).values("pk")
        lookup = f"{self.version_path}__in" if self.version_path else "pk__in"
        return super().get_queryset(request).filter(**{lookup: visible})


@admin.register(ModelVersion)
class ModelVersionAdmin(VisibleVersionsAdmin):
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


@admin.register(GateResult)
class GateResultAdmin(VisibleVersionsAdmin):
    """The flipped cases as the user may read them (registry.selectors.gate_report), never the raw list."""

    version_path = "candidate"
    list_display = ["candidate", "baseline", "verdict", "created_at"]
    exclude = ["flipped"]

    def get_readonly_fields(self, request, obj=None):
        def flipped_cases(gate):
            flips = gate_report(gate, user=request.user)["flipped"]
            return format_html_join(format_html("<br>"), "{}", ((_flip_line(flip),) for flip in flips)) or "—"

        flipped_cases.short_description = "flipped cases"
        return [*super().get_readonly_fields(request, obj), flipped_cases]


def _flip_line(flip: dict) -> str:
    if flip.get("hidden"):
        return (f"{flip['direction']}: {flip['count']} case(s) of {flip['suite']} ({flip['team']}) — visible to "
                "its team and platform admins only")
    return (f"{flip['direction']} {flip['suite']} · {flip['case']}: {flip['prompt']} | expected {flip['expected']} "
            f"| old {flip['old_output']} | new {flip['new_output']}")


@admin.register(PromotionRequest)
class PromotionRequestAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    team_path = "version__skill__team"
    list_display = ["version", "status", "requested_by", "created_at", "decided_at"]


@admin.register(Approval)
class ApprovalAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    team_path = "request__version__skill__team"


@admin.register(EvalRun)
class EvalRunAdmin(VisibleVersionsAdmin):
    """Scores are not private: a run is visible with its version."""

    version_path = "version"
    list_display = ["version", "suite", "status", "score", "passed", "total", "finished_at"]


@admin.register(CaseResult)
class CaseResultAdmin(VisibleVersionsAdmin):
    """A case's output is its skill's team's (the probes' are everyone's in a team), on a visible version."""

    version_path = "eval_run__version"
    list_display = ["case_key", "eval_run", "passed", "output"]

    def get_queryset(self, request):
        return scope_to_teams(super().get_queryset(request), request.user, "case__suite__skill__team",
                              "case__suite__skill")

    @admin.display(description="case")
    def case_key(self, result):
        return result.case.key
