"""Uploading demonstrations: validate and preview (nothing saved), then save on confirmation.

Between the two steps the files wait under VAR_DIR/uploads (skills.uploads: a random token, kept in the
session beside what the preview found — `ValidatedUpload`: the split, the seed, the content's sha256), so
that each request reads each file once: the confirmation streams the rows in and checks their checksum.
Confirming the same upload twice (a double click) shows the set the first confirmation saved. The client's
file name is shown to people and stored as a label, never used as a path."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from frontend.access import attach_nav, demonstration_set_or_404, page, skill_or_404
from frontend.forms import UploadForm
from registry.selectors import production_token_budget
from skills.parsing import file_label, sizes_told_apart
from skills.selectors import skills_of_team
from skills.services import (
    UploadRefused,
    ValidatedUpload,
    demonstration_set_preview,
    demonstration_set_save,
    readiness_request,
)
from skills.uploads import (
    demonstration_set_of_upload,
    pending_upload_discard,
    pending_upload_paths,
    pending_upload_store,
    pending_upload_token,
)

PENDING = "pending_upload"
NO_LONGER_PENDING = "This upload is no longer pending (it was saved, cancelled or expired); upload the file again."


def _discard(request) -> None:
    pending = request.session.pop(PENDING, None)
    if pending:
        pending_upload_discard(pending.get("token"))


def _content_length(request) -> int | None:
    """The body's declared length; None when the header is not a number (refused as too large)."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 20 else None


# Django's documented pattern for a view that must act before the body is parsed: CsrfViewMiddleware
# reads request.POST (the whole multipart body) in process_view, so the size check runs in an exempt
# outer view and the real view is csrf_protect-ed — every POST is still CSRF-checked.
@csrf_exempt
def upload(request):
    length = _content_length(request) if request.method == "POST" else 0
    if request.user.is_authenticated and (length is None or length > settings.ACCRETE_UPLOAD_MAX_BYTES):
        attach_nav(request)
        shown, limit = sizes_told_apart(length or 0, settings.ACCRETE_UPLOAD_MAX_BYTES)
        size = f"is {shown}" if length is not None else "declares no readable size"
        return render(request, "frontend/refused.html", {
            "title": "File too large",
            "message": f"This upload {size}; the limit is {limit} (ACCRETE_UPLOAD_MAX_BYTES). "
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
    form = UploadForm(request.POST, request.FILES, skills=skills)  # any skill id: scoped below (404)
    if not form.is_valid():
        return render(request, "frontend/upload.html", {"form": form, "has_skills": skills.exists()}, status=400)
    skill = skill_or_404(request, form.cleaned_data["skill"].pk)

    _discard(request)
    token = pending_upload_token()
    eval_file = form.cleaned_data.get("eval_file")
    filename = file_label(form.cleaned_data["file"].name)
    try:  # the service checks the role: a refused upload is deleted here, and `page` shows why
        path = pending_upload_store(form.cleaned_data["file"].chunks(), token=token, suffix="upload")
        eval_path = pending_upload_store(eval_file.chunks(), token=token, suffix="eval") if eval_file else None
        outcome = demonstration_set_preview(skill=skill, path=path, filename=filename, actor=request.user,
                                            eval_path=eval_path, budget=production_token_budget())
    except BaseException:
        pending_upload_discard(token)
        raise
    if outcome.ok:
        request.session[PENDING] = {"token": token, "skill": skill.pk, "filename": outcome.validated.filename,
                                    "validated": outcome.validated.to_dict()}
    else:
        pending_upload_discard(token)
    return render(request, "frontend/upload_report.html", {
        "skill": skill, "outcome": outcome, "filename": filename, "token": token if outcome.ok else "",
    }, status=200 if outcome.ok else 422)


@page
@require_POST
def upload_confirm(request):
    token = request.POST.get("token", "")
    pending = request.session.get(PENDING)
    # an entry without "validated" was left by an older version of this view
    if not pending or "validated" not in pending or pending["token"] != token:
        saved = demonstration_set_of_upload(token)
        if saved is not None:  # confirmed before: show what it saved
            dset = demonstration_set_or_404(request, saved.pk)
            messages.info(request, f"This upload was already saved as demonstrations v{dset.version} for "
                                   f"{dset.skill.name}; nothing new was saved.")
            return redirect("skill_detail", pk=dset.skill_id)
        messages.error(request, NO_LONGER_PENDING)
        return redirect("upload")
    skill = skill_or_404(request, pending["skill"])
    validated = ValidatedUpload.from_dict(pending["validated"])
    path, eval_path = pending_upload_paths(pending["token"])
    try:
        dset = demonstration_set_save(skill=skill, validated=validated, path=path, actor=request.user,
                                      eval_path=eval_path if validated.eval_sha256 else None,
                                      upload_token=pending["token"])
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
