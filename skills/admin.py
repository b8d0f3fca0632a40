from django.contrib import admin

from config.admin_base import ReadOnlyAdmin
from skills.models import Demonstration, DemonstrationSet, EvalCase, EvalSuite, Skill


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "team", "scorer", "teacher_style", "tolerance", "min_gain", "status"]
    list_filter = ["team", "status", "teacher_style"]
    prepopulated_fields = {"slug": ["name"]}
    # The gate's rules change only through audited paths, never by a silent admin edit.
    readonly_fields = ["tolerance", "min_gain", "status", "scorer", "scorer_options"]


# Uploads are immutable: they are created by the upload service only.
for model in (DemonstrationSet, Demonstration, EvalSuite, EvalCase):
    admin.site.register(model, ReadOnlyAdmin)
