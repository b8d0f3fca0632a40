from django.contrib.auth import views as auth_views
from django.urls import path

from frontend import (
    views_approvals,
    views_audit,
    views_dashboard,
    views_jobs,
    views_playground,
    views_skills,
    views_upload,
    views_versions,
)

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="frontend/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views_dashboard.dashboard, name="dashboard"),
    path("team/", views_dashboard.team_switch, name="team_switch"),
    path("skills/", views_skills.skill_list, name="skills"),
    path("skills/new/", views_skills.skill_new, name="skill_new"),
    path("skills/<int:pk>/", views_skills.skill_detail, name="skill_detail"),
    path("skills/<int:pk>/train/", views_jobs.job_start, name="job_start"),
    path("upload/", views_upload.upload, name="upload"),
    path("upload/confirm/", views_upload.upload_confirm, name="upload_confirm"),
    path("upload/cancel/", views_upload.upload_cancel, name="upload_cancel"),
    path("demonstration-sets/<int:pk>/readiness/", views_upload.readiness_check, name="readiness_check"),
    path("jobs/", views_jobs.job_list, name="jobs"),
    path("jobs/<int:pk>/", views_jobs.job_detail, name="job_detail"),
    path("jobs/<int:pk>/progress/", views_jobs.job_progress, name="job_progress"),
    path("jobs/<int:pk>/cancel/", views_jobs.job_cancel, name="job_cancel"),
    path("versions/", views_versions.version_list, name="versions"),
    path("versions/<int:pk>/", views_versions.version_detail, name="version_detail"),
    path("versions/<int:pk>/retrain/", views_versions.version_retrain, name="version_retrain"),
    path("versions/<int:pk>/request-promotion/", views_versions.version_request_promotion,
         name="version_request_promotion"),
    path("forgetting-matrix/", views_versions.matrix, name="matrix"),
    path("api/forgetting-matrix.json", views_versions.matrix_json, name="matrix_json"),
    path("approvals/", views_approvals.approval_inbox, name="approvals"),
    path("approvals/<int:pk>/decide/", views_approvals.approval_decide_view, name="approval_decide"),
    path("playground/", views_playground.playground, name="playground"),
    path("audit/", views_audit.audit_log, name="audit"),
]
