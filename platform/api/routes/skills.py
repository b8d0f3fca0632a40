"""Skills, their demonstration sets (upload → validation report → confirm; list; download) and readiness."""

import json
from dataclasses import asdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import File, Form, Query, Router
from ninja.files import UploadedFile

from api import serialize
from api.models import PendingUpload
from api.paging import PageParams, page_of, paged
from api.problems import Problem
from api.schemas import (
    DecisionIn,
    DemonstrationSetOut,
    ReadinessOut,
    SkillChangeDecisionOut,
    SkillChangeOut,
    SkillIn,
    SkillOut,
    SkillPatch,
    UploadReportOut,
)
from registry.selectors import production_token_budget
from skills.models import DemonstrationSet, Skill, SkillChange
from skills.parsing import file_label, sizes_told_apart
from skills.selectors import demonstration_sets_of
from skills.services import (
    UploadRefused,
    ValidatedUpload,
    demonstration_set_preview,
    demonstration_set_save,
    readiness_request,
    skill_archive,
    skill_change_decide,
    skill_create,
    skill_reactivate,
    skill_update,
)
from skills.uploads import (
    demonstration_set_of_upload,
    is_upload_token,
    pending_upload_discard,
    pending_upload_paths,
    pending_upload_store,
    pending_upload_token,
)
from teams.models import Team
from teams.selectors import teams_of

router = Router(tags=["skills"])


def skill_or_404(request, slug: str) -> Skill:
    return get_object_or_404(Skill.objects.select_related("team"), slug=slug, team__in=teams_of(request.user))


def set_or_404(request, pk: int) -> DemonstrationSet:
    return get_object_or_404(DemonstrationSet.objects.select_related("skill", "skill__team"), pk=pk,
                             skill__team__in=teams_of(request.user))


def team_or_404(request, slug: str) -> Team:
    return get_object_or_404(teams_of(request.user), slug=slug)


@router.get("/skills", response=page_of(SkillOut), summary="Skills of my teams")
def skills_list(request, page: Query[PageParams], team: str | None = None, status: str | None = None):
    qs = Skill.objects.filter(team__in=teams_of(request.user)).select_related("team").order_by("slug")
    if team:
        qs = qs.filter(team__slug=team)
    if status:
        qs = qs.filter(status=status)
    return paged(qs, serialize.skill, page)


@router.post("/skills", response={201: SkillOut}, summary="Create a skill (skill owners)")
def skills_create(request, payload: SkillIn):
    team = team_or_404(request, payload.team)
    data = payload.dict(exclude={"team"})
    created = skill_create(team=team, actor=request.user, **data)
    return 201, serialize.skill(created)


@router.get("/skills/{slug}", response=SkillOut)
def skills_detail(request, slug: str):
    return serialize.skill(skill_or_404(request, slug))


@router.patch("/skills/{slug}", response=SkillChangeOut,
              summary="Edit a skill's rules: tightening applies at once, loosening waits for another skill owner")
def skills_edit(request, slug: str, payload: SkillPatch):
    skill = skill_or_404(request, slug)
    update = skill_update(skill=skill, actor=request.user, **payload.dict())
    skill.refresh_from_db()
    return {"applied": update.applied, "pending_change": update.pending.pk if update.pending else None,
            "pending_fields": update.pending.fields if update.pending else None, "skill": serialize.skill(skill)}


@router.post("/skill-changes/{pk}/decision", response=SkillChangeDecisionOut,
             summary="Approve or reject a pending loosening of a skill's rules (another skill owner: four eyes)")
def skill_changes_decide(request, pk: int, payload: DecisionIn):
    change = get_object_or_404(SkillChange.objects.select_related("skill__team", "requested_by"), pk=pk,
                               skill__team__in=teams_of(request.user))
    change = skill_change_decide(change=change, actor=request.user, decision=payload.decision,
                                 comment=payload.comment)
    return {"id": change.pk, "skill": change.skill.slug, "status": change.status, "fields": change.fields,
            "requested_by": change.requested_by.get_username(), "comment": change.comment,
            "decided_by": change.decided_by.get_username() if change.decided_by_id else None}


@router.post("/skills/{slug}/archive", response=SkillOut)
def skills_archive(request, slug: str):
    return serialize.skill(skill_archive(skill=skill_or_404(request, slug), actor=request.user))


@router.post("/skills/{slug}/reactivate", response=SkillOut)
def skills_reactivate(request, slug: str):
    return serialize.skill(skill_reactivate(skill=skill_or_404(request, slug), actor=request.user))


# --- demonstrations -------------------------------------------------------------------------------------

def _report(outcome, filename: str, token: str | None) -> dict:
    report = outcome.report
    return {"ok": outcome.ok, "token": token, "filename": filename, "format": report.format,
            "row_count": report.row_count, "usable_row_count": report.usable_row_count,
            "train_count": outcome.train_count, "eval_count": outcome.eval_count,
            "problems": [asdict(p) for p in report.problems],
            "problems_omitted": report.problems_omitted,
            "eval_report": None if outcome.eval_report is None else {
                "ok": outcome.eval_report.ok, "row_count": outcome.eval_report.row_count,
                "problems": [asdict(p) for p in outcome.eval_report.problems],
                "problems_omitted": outcome.eval_report.problems_omitted},
            "messages": list(outcome.messages)}


def _upload_problem(outcome, filename: str, eval_name: str | None) -> Problem:
    errors = [{"file": filename, **_problem_fields(p)} for p in outcome.report.problems]
    if outcome.eval_report is not None:
        errors += [{"file": eval_name, **_problem_fields(p)} for p in outcome.eval_report.problems]
    if outcome.duplicate_of is not None:
        return Problem(409, " ".join(outcome.messages), code="duplicate-upload",
                       demonstration_set=outcome.duplicate_of.pk)
    first = errors[0] if errors else {}
    where = f"{first.get('file')}, line {first['line']}: " if first.get("line") else ""
    omitted = outcome.report.problems_omitted + (outcome.eval_report.problems_omitted if outcome.eval_report else 0)
    return Problem(422, f"{len(errors) + omitted} problem(s); nothing was saved. {where}{first.get('message', '')}",
                   code="invalid-upload", errors=errors, problems_omitted=omitted)


def _problem_fields(problem) -> dict:
    return {"line": problem.line, "field": problem.field, "message": problem.message, "fix": problem.fix}


def _too_large(upload: UploadedFile | None) -> None:
    if upload is not None and upload.size > settings.ACCRETE_UPLOAD_MAX_BYTES:
        shown, limit = sizes_told_apart(upload.size, settings.ACCRETE_UPLOAD_MAX_BYTES)
        raise Problem(413, f"{file_label(upload.name)} is {shown}; the limit is {limit} (ACCRETE_UPLOAD_MAX_BYTES). "
                      "Split the file, or ask an admin to raise the limit.", code="too-large")


@router.post("/skills/{slug}/uploads", response={200: UploadReportOut, 201: UploadReportOut},
             summary="Upload demonstrations: validated and previewed; saved by /uploads/{token}/confirm "
                     "(or at once with confirm=true)")
def uploads_create(request, slug: str, file: File[UploadedFile], eval_file: File[UploadedFile] = None,
                   seed: Form[int] = None, confirm: Form[bool] = False):
    skill = skill_or_404(request, slug)
    _too_large(file)
    _too_large(eval_file)
    _forget_expired_uploads()
    token = pending_upload_token()
    filename = file_label(file.name or "upload")
    eval_name = file_label(eval_file.name or "eval") if eval_file is not None else None
    try:
        path = pending_upload_store(file.chunks(), token=token, suffix="upload")
        eval_path = pending_upload_store(eval_file.chunks(), token=token, suffix="eval") if eval_file else None
        outcome = demonstration_set_preview(skill=skill, path=path, filename=filename, actor=request.user,
                                            eval_path=eval_path, seed=seed, budget=production_token_budget())
        if not outcome.ok:
            raise _upload_problem(outcome, filename, eval_name)
        if confirm:
            saved = demonstration_set_save(skill=skill, validated=outcome.validated, path=path, actor=request.user,
                                           eval_path=eval_path, upload_token=token)
            pending_upload_discard(token)
            return 201, {**_report(outcome, filename, None),
                         "demonstration_set": serialize.demonstration_set(saved)}
        PendingUpload.objects.create(token=token, user=request.user, skill=skill,
                                     validated=outcome.validated.to_dict())
    except BaseException:
        pending_upload_discard(token)
        raise
    return 200, _report(outcome, filename, token)


def _forget_expired_uploads() -> None:
    """Rows of uploads nobody confirmed within ACCRETE_UPLOAD_TTL_S (their files are gone by then: the hourly
    expiry deletes them) are deleted here, as new uploads come in."""
    cutoff = timezone.now() - timedelta(seconds=settings.ACCRETE_UPLOAD_TTL_S)
    PendingUpload.objects.filter(created_at__lt=cutoff).delete()


def _pending_or_404(request, token: str) -> PendingUpload | None:
    if not is_upload_token(token):
        raise Problem(404, "Not an upload token: use the token the upload's report gave.", code="not-found")
    return PendingUpload.objects.select_related("skill", "skill__team").filter(token=token, user=request.user).first()


@router.post("/uploads/{token}/confirm", response={201: DemonstrationSetOut, 200: DemonstrationSetOut},
             summary="Save a validated upload as the skill's next demonstration set")
def uploads_confirm(request, token: str):
    pending = _pending_or_404(request, token)
    if pending is None:
        saved = demonstration_set_of_upload(token)
        if saved is not None and saved.skill.team_id in set(teams_of(request.user).values_list("pk", flat=True)):
            return 200, serialize.demonstration_set(saved)  # confirmed before: the same set
        raise Problem(404, "This upload is not pending (it was saved, cancelled or expired, or it is another "
                      "user's): upload the file again.", code="not-found")
    validated = ValidatedUpload.from_dict(pending.validated)
    path, eval_path = pending_upload_paths(token)
    try:
        saved = demonstration_set_save(skill=pending.skill, validated=validated, path=path, actor=request.user,
                                       eval_path=eval_path if validated.eval_sha256 else None, upload_token=token)
    except FileNotFoundError:
        pending.delete()
        raise Problem(410, "The uploaded file expired (ACCRETE_UPLOAD_TTL_S) before it was confirmed: upload it "
                      "again.", code="upload-expired") from None
    except UploadRefused:
        _discard(pending)
        raise
    _discard(pending)
    return 201, serialize.demonstration_set(saved)


def _discard(pending: PendingUpload) -> None:
    with transaction.atomic():
        pending.delete()
    pending_upload_discard(pending.token)


@router.delete("/uploads/{token}", response={204: None}, summary="Cancel a pending upload")
def uploads_cancel(request, token: str):
    pending = _pending_or_404(request, token)
    if pending is not None:
        _discard(pending)
    return 204, None


@router.get("/skills/{slug}/demonstration-sets", response=page_of(DemonstrationSetOut), tags=["demonstrations"])
def sets_list(request, slug: str, page: Query[PageParams]):
    sets = demonstration_sets_of(skill_or_404(request, slug)).select_related("skill")
    return paged(sets, serialize.demonstration_set, page)


@router.get("/demonstration-sets/{pk}", response=DemonstrationSetOut, tags=["demonstrations"])
def sets_detail(request, pk: int):
    return serialize.demonstration_set(set_or_404(request, pk))


@router.get("/demonstration-sets/{pk}/download", tags=["demonstrations"],
            summary="The set's rows as chat JSONL (uploadable again), in file order",
            openapi_extra={"responses": {200: {"description": "JSONL", "content": {"application/x-ndjson": {}}}}})
def sets_download(request, pk: int):
    dset = set_or_404(request, pk)

    def lines():
        for row in dset.rows.order_by("line").values("line", "prompt", "demonstration", "reference", "metadata") \
                .iterator(chunk_size=500):
            # the chat format the upload accepts: the prompt's messages, then the demonstration as the
            # assistant's turn — a downloaded set uploads again as the same rows
            record = {"messages": [*row["prompt"], {"role": "assistant", "content": row["demonstration"]}]}
            if row["reference"] != row["demonstration"]:
                record["reference"] = row["reference"]
            if row["metadata"]:
                record["metadata"] = row["metadata"]
            yield json.dumps(record, ensure_ascii=False) + "\n"

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{dset.skill.slug}-v{dset.version}.jsonl"'
    return response


@router.post("/demonstration-sets/{pk}/readiness", response={202: ReadinessOut}, tags=["demonstrations"],
             summary="Queue the readiness check (teacher vs student on a sample)")
def readiness_start(request, pk: int):
    dset = set_or_404(request, pk)
    readiness_request(demonstration_set=dset, actor=request.user)
    # queued: a worker writes the new report over the previous one (GET shows the latest there is)
    return 202, {"demonstration_set": dset.pk, "status": "queued", "report": None}


@router.get("/demonstration-sets/{pk}/readiness", response=ReadinessOut, tags=["demonstrations"])
def readiness_result(request, pk: int):
    dset = set_or_404(request, pk)
    return {"demonstration_set": dset.pk, "status": "done" if dset.readiness else "not_run", "report": dset.readiness}
