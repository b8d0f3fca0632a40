from django.contrib import admin

from config.admin_base import ReadOnlyAdmin
from evaluation.models import CaseResult, EvalRun

for model in (EvalRun, CaseResult):
    admin.site.register(model, ReadOnlyAdmin)
