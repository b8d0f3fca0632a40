"""Teams and roles in the admin. Granting, changing and revoking a role is a platform admin's act (each is
audited by teams.signals); other staff see their own teams only, read-only."""

from django.contrib import admin

from teams.admin_scope import TeamScopedAdmin
from teams.models import Membership, Team
from teams.permissions import is_platform_admin


class PlatformAdminWrites:
    def has_add_permission(self, request, *args):
        return is_platform_admin(request.user) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return is_platform_admin(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return is_platform_admin(request.user) and super().has_delete_permission(request, obj)


class MembershipInline(PlatformAdminWrites, admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Team)
class TeamAdmin(PlatformAdminWrites, TeamScopedAdmin):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(PlatformAdminWrites, TeamScopedAdmin):
    team_path = "team"
    list_display = ["user", "team", "role"]
    list_filter = ["team", "role"]
