"""Uploading demonstrations: validate and preview (nothing saved), then save on confirmation.

Between the two steps the file lives under VAR_DIR/uploads with a random name kept in the session;
the client's file name is shown to people and stored as a label, never used as a path."""

import uuid
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from frontend.access import attach_nav, demonstration_set_or_404, page, require, skill_or_404
from frontend.forms import UploadForm
from skills.selectors import skills_of_team
from skills.services import demonstration_set_upload, readiness_request
from teams.models import Role

PENDING = "pending_upload"


def uploads_dir() -> Path:
    path = Path(settings.VAR_DIR) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _store(uploaded, token: str, suffix: str) -> Path:
    path = uploads_dir() / f"{token}.{suffix}"
    with open(path, "wb") as handle:
        for chunk in uploaded.chunks():
            handle.write(chunk)
    return path


def _paths(token: str) -> tuple[Path, Path]:
    token = uuid.UUID(hex=token).hex  # refuses anything that is not a token we made
    return uploads_dir() / f"{token}.upload", uploads_dir() / f"{token}.eval"


def _discard(request) -> None:
    pending = request.session.pop(PENDING, None)
    if pending:
        for path in _paths(pending["token"]):
            path.unlink(missing_ok=True)


def _too_large(request) -> bool:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return True
    return length > settings.ACCRETE_UPLOAD_MAX_BYTES


# Django's documented pattern for a view that must act before the body is parsed: CsrfViewMiddleware
# reads request.POST (the whole multipart body) in process_view, so the size check runs in an exempt
# outer view and the real view is csrf_protect-ed — every POST is still CSRF-checked.
@csrf_exempt
def upload(request):
    if request.method == "POST" and request.user.is_authenticated and _too_large(request):
        attach_nav(request)
        limit_mb = settings.ACCRETE_UPLOAD_MAX_BYTES / (1024 * 1024)
        return render(request, "frontend/refused.html", {
            "title": "File too large",
            "message": f"This upload is larger than the {limit_mb:.1f} MB limit (ACCRETE_UPLOAD_MAX_BYTES). "
                       "Split the file, or ask an admin to raise the limit.",
        }, status=413)
    return _upload(request)


@page
@csrf_protect
def _upload(request):
    skills = skills_of_team(request.team)
    if request.method != "POST":
        initial = {"skill": request.GET.get("skill")} if request.GET.get("skill") else None
        return render(request, "frontend/upload.html", {"form": UploadForm(skills=skills, initial=initial),
                                                        "has_skills": skills.exists()})
    form = UploadForm(request.POST, request.FILES)  # any skill id: scoped just below (404, not "invalid")
    if not form.is_valid():
        return render(request, "frontend/upload.html", {"form": form, "has_skills": skills.exists()}, status=400)
    skill = skill_or_404(request, form.cleaned_data["skill"].pk)
    require(request, skill.team, Role.CONTRIBUTOR, action=f"upload demonstrations for {skill.name}")

    _discard(request)
    token = uuid.uuid4().hex
    path = _store(form.cleaned_data["file"], token, "upload")
    eval_file = form.cleaned_data.get("eval_file")
    eval_path = _store(eval_file, token, "eval") if eval_file else None
    filename = Path(form.cleaned_data["file"].name).name
    try:
        outcome = demonstration_set_upload(skill=skill, path=path, filename=filename, actor=request.user,
                                           eval_path=eval_path, dry_run=True)
    except BaseException:
        path.unlink(missing_ok=True)
        if eval_path:
            eval_path.unlink(missing_ok=True)
        raise
    if outcome.ok:
        request.session[PENDING] = {"token": token, "skill": skill.pk, "filename": filename,
                                    "eval_filename": Path(eval_file.name).name if eval_file else ""}
    else:
        path.unlink(missing_ok=True)
        if eval_path:
            eval_path.unlink(missing_ok=True)
    return render(request, "frontend/upload_report.html", {
        "skill": skill, "outcome": outcome, "filename": filename, "token": token if outcome.ok else "",
    }, status=200 if outcome.ok else 422)


@page
@require_POST
def upload_confirm(request):
    pending = request.session.get(PENDING)
    if not pending or pending["token"] != request.POST.get("token"):
        messages.error(request, "This upload is no longer pending (it was saved, cancelled or expired); "
                                "upload the file again.")
        return redirect("upload")
    skill = skill_or_404(request, pending["skill"])
    path, eval_path = _paths(pending["token"])
    try:
        outcome = demonstration_set_upload(
            skill=skill, path=path, filename=pending["filename"], actor=request.user,
            eval_path=eval_path if pending["eval_filename"] else None, dry_run=False)
    finally:
        _discard(request)
    if outcome.demonstration_set is None:
        return render(request, "frontend/upload_report.html", {
            "skill": skill, "outcome": outcome, "filename": pending["filename"], "token": ""}, status=409)
    dset = outcome.demonstration_set
    messages.success(request, f"Saved demonstrations v{dset.version} for {skill.name}: {dset.train_count} "
                              f"training rows, {dset.eval_count} held-out eval cases.")
    return redirect("skill_detail", pk=skill.pk)


@page
@require_POST
def upload_cancel(request):
    _discard(request)
    messages.info(request, "Upload cancelled; nothing was saved.")
    return redirect("upload")


@page
@require_POST
def readiness_check(request, pk):
    dset = demonstration_set_or_404(request, pk)
    readiness_request(demonstration_set=dset, actor=request.user)
    messages.success(request, f"Readiness check queued for demonstrations v{dset.version}: a worker compares "
                              "the teacher with the student on a sample; the report appears here when done.")
    return redirect("skill_detail", pk=dset.skill_id)
