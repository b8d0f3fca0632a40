"""Uploading demonstrations: validate and preview (nothing saved), then save on confirmation.

Between the two steps the file lives under VAR_DIR/uploads with a random name kept in the session,
beside what the preview found (`ValidatedUpload`: the split, the seed, the content's sha256), so that
each request reads each file once: the confirmation streams the rows in and checks their checksum.
The client's file name is shown to people and stored as a label, never used as a path."""

import uuid
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from frontend.access import attach_nav, demonstration_set_or_404, page, skill_or_404
from frontend.forms import UploadForm
from registry.selectors import production_token_budget
from skills.selectors import skills_of_team
from skills.services import (
    UploadRefused,
    ValidatedUpload,
    demonstration_set_preview,
    demonstration_set_save,
    readiness_request,
)

PENDING = "pending_upload"
NO_LONGER_PENDING = "This upload is no longer pending (it was saved, cancelled or expired); upload the file again."


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

    _discard(request)
    token = uuid.uuid4().hex
    path = _store(form.cleaned_data["file"], token, "upload")
    eval_file = form.cleaned_data.get("eval_file")
    eval_path = _store(eval_file, token, "eval") if eval_file else None
    filename = Path(form.cleaned_data["file"].name).name
    try:  # the service checks the role: a refused upload is deleted here, and `page` shows why
        outcome = demonstration_set_preview(skill=skill, path=path, filename=filename, actor=request.user,
                                            eval_path=eval_path, budget=production_token_budget())
    except BaseException:
        path.unlink(missing_ok=True)
        if eval_path:
            eval_path.unlink(missing_ok=True)
        raise
    if outcome.ok:
        request.session[PENDING] = {"token": token, "skill": skill.pk, "filename": filename,
                                    "validated": outcome.validated.to_dict()}
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
    # an entry without "validated" was left by an older version of this view
    if not pending or "validated" not in pending or pending["token"] != request.POST.get("token"):
        messages.error(request, NO_LONGER_PENDING)
        return redirect("upload")
    skill = skill_or_404(request, pending["skill"])
    validated = ValidatedUpload.from_dict(pending["validated"])
    path, eval_path = _paths(pending["token"])
    try:
        dset = demonstration_set_save(skill=skill, validated=validated, path=path, actor=request.user,
                                      eval_path=eval_path if validated.eval_sha256 else None)
    except UploadRefused as exc:
        messages.error(request, str(exc))
        return redirect(f"{reverse('upload')}?skill={skill.pk}")
    except FileNotFoundError:  # the pending file was cleaned away
        messages.error(request, NO_LONGER_PENDING)
        return redirect("upload")
    finally:
        _discard(request)
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
