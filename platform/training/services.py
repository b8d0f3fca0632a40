"""Training jobs: validating → queued → running → succeeded | failed | cancelled.

Every transition is a compare-and-set on the status column, so a task delivered twice, a reaper and a
cancel request racing each other each win at most once."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from config import dispatch
from registry.errors import TransitionError
from registry.models import ModelVersion
from registry.services.versions import production_version, version_create_candidate
from teams.models import Role
from teams.permissions import require_role
from training.models import JobEvent, MetricPoint, TrainingJob

J = TrainingJob.Status


def job_event(*, job: TrainingJob, kind: str, message: str, data: dict | None = None) -> JobEvent:
    return JobEvent.objects.create(job=job, kind=kind, message=message, data=data or {})


def _cas(job_id: int, old: set[str], new: str, **fields) -> bool:
    return TrainingJob.objects.filter(pk=job_id, status__in=old).update(status=new, **fields) == 1


def job_request_authorize(*, skill, actor) -> None:
    """Raises RoleRequired unless `actor` may ask for training of `skill`: `job_request` asks first, and so
    do the pages that show the training form, before showing a form their user could not submit."""
    require_role(actor, skill.team, Role.CONTRIBUTOR, action=f"train {skill.slug}")


def job_request(*, skill, demonstration_set, method: str, config: dict, actor, enqueue: bool = True) -> TrainingJob:
    """Ask for a skill to be added to the production model. Validates, then queues the job."""
    from workers.engine.contract.config import TrainConfig  # pure Python: the web process never loads torch

    job_request_authorize(skill=skill, actor=actor)
    if demonstration_set.skill_id != skill.pk:
        raise TransitionError(f"Demonstration set {demonstration_set} does not belong to skill {skill.slug}.")
    if skill.status != skill.Status.ACTIVE:
        raise TransitionError(f"Skill {skill.slug} is archived; reactivate it before training.")
    if method not in TrainingJob.Method.values:
        raise TransitionError(f"Unknown method {method!r}: use one of {', '.join(TrainingJob.Method.values)}.")
    if production_version() is None:
        raise TransitionError("There is no production model yet: import a base model first (make model).")
    snapshot = TrainConfig.from_dict({**config, "method": method, "teacher_style": skill.teacher_style}).to_dict()
    snapshot["anchor_pool_sha256"] = _anchor_pool_sha256(TrainConfig.from_dict(snapshot))
    with transaction.atomic():
        job = TrainingJob.objects.create(
            skill=skill, demonstration_set=demonstration_set, method=method, config=snapshot,
            requested_by=actor, status=J.VALIDATING,
        )
        job_event(job=job, kind="requested", message=f"{method.upper()} training requested for {skill.name}.")
        _cas(job.pk, {J.VALIDATING}, J.QUEUED, enqueued_at=timezone.now())
        job.status = J.QUEUED
        job_event(job=job, kind="queued", message="Queued for a training worker.")
        audit_record(actor=actor, action="job.requested", obj=job, team=skill.team,
                     data={"skill": skill.slug, "method": method, "demonstration_set": demonstration_set.version})
        if enqueue:
            transaction.on_commit(lambda: _enqueue_train(job.pk))
    return job


def _anchor_pool_sha256(config) -> str | None:
    """Which shipped anchor pool an anchored job trains with, recorded in its config (None: not anchored)."""
    from workers.engine.contract.anchors import load_anchor_pool  # pure Python, like TrainConfig

    return load_anchor_pool().sha256 if config.anchors_per_step else None


def _enqueue_train(job_id: int) -> None:
    dispatch.send(dispatch.TRAIN_JOB, job_id)


def job_start(*, job_id: int, worker: str) -> TrainingJob | None:
    """Claim a queued job for this worker. None when another delivery already has it (or it ended)."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job_id)
        if job.status != J.QUEUED:
            return None
        if job.cancel_requested:
            job_mark_cancelled(job_id=job.pk)
            return None
        now = timezone.now()
        if job.parent_version_id is None:
            # The lineage rule: a job trains from production as it is when the job starts running.
            job.parent_version = production_version()
        _cas(job.pk, {J.QUEUED}, J.RUNNING, started_at=job.started_at or now, heartbeat_at=now,
             attempts=job.attempts + 1, worker=worker, parent_version=job.parent_version)
        job.refresh_from_db()
        job_event(job=job, kind="running", message=f"Running on {worker} (attempt {job.attempts}) from "
                  f"v{job.parent_version.number}.", data={"worker": worker, "attempt": job.attempts})
        audit_record(actor=None, actor_label=worker, action="job.running", obj=job, team=job.skill.team,
                     data={"parent_version": job.parent_version.number, "attempt": job.attempts})
    return job


def job_record_progress(*, job_id: int, progress: dict) -> bool:
    """Store the latest progress and a metric point. Returns whether a cancel was requested."""
    now = timezone.now()
    fields = {k: progress.get(k) for k in ("loss", "kl", "tokens_per_second", "eta_seconds", "peak_memory_bytes")}
    TrainingJob.objects.filter(pk=job_id, status=J.RUNNING).update(
        step=progress["step"], total_steps=progress["total_steps"], heartbeat_at=now, **fields
    )
    MetricPoint.objects.update_or_create(
        job_id=job_id, step=progress["step"],
        defaults={"loss": progress.get("loss"), "kl": progress.get("kl"),
                  "learning_rate": progress.get("learning_rate"),
                  "tokens_per_second": progress.get("tokens_per_second")},
    )
    return TrainingJob.objects.filter(pk=job_id, cancel_requested=True).exists()


def job_heartbeat(*, job_id: int) -> bool:
    TrainingJob.objects.filter(pk=job_id, status=J.RUNNING).update(heartbeat_at=timezone.now())
    return TrainingJob.objects.filter(pk=job_id, cancel_requested=True).exists()


def job_succeed(*, job_id: int, artifact_path: str, adapter_path: str, checksums: dict, metrics: dict) -> ModelVersion:
    """Finish a job and create its candidate. Idempotent: a second call returns the same candidate."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job_id)
        if job.candidate_id is not None:
            return job.candidate
        if job.status != J.RUNNING:
            raise TransitionError(f"Job {job.pk} is {job.status}; only a running job can succeed.")
        version = version_create_candidate(job=job, artifact_path=artifact_path, adapter_path=adapter_path,
                                           checksums=checksums, metrics=metrics)
        _cas(job.pk, {J.RUNNING}, J.SUCCEEDED, finished_at=timezone.now(), step=job.total_steps or job.step)
        job_event(job=job, kind="succeeded", message=f"Training finished: candidate v{version.number}.",
                  data={"version": version.number, **{k: metrics.get(k) for k in ("final_loss", "wall_seconds")}})
        audit_record(actor=None, action="job.succeeded", obj=job, team=job.skill.team,
                     data={"version": version.number, "skill": job.skill.slug})
    return version


def job_fail(*, job_id: int, error: str) -> bool:
    with transaction.atomic():
        job = TrainingJob.objects.get(pk=job_id)
        if not _cas(job_id, {J.VALIDATING, J.QUEUED, J.RUNNING}, J.FAILED, finished_at=timezone.now(),
                    error=error[:5000]):
            return False
        job_event(job=job, kind="failed", message=f"Training failed: {error.splitlines()[0] if error else ''}"[:500])
        audit_record(actor=None, action="job.failed", obj=job, team=job.skill.team,
                     data={"error": error[:1000], "skill": job.skill.slug})
    return True


def job_cancel_request(*, job: TrainingJob, actor) -> TrainingJob:
    require_role(actor, job.skill.team, Role.CONTRIBUTOR, action=f"cancel job {job.pk}")
    with transaction.atomic():
        if not job.is_active:
            raise TransitionError(f"Job {job.pk} is {job.status}; there is nothing to cancel.")
        TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
        job_event(job=job, kind="cancel_requested", message="Cancel requested; the worker stops after this step.")
        audit_record(actor=actor, action="job.cancel_requested", obj=job, team=job.skill.team)
        # A job no worker holds yet is cancelled right away.
        if _cas(job.pk, {J.VALIDATING, J.QUEUED}, J.CANCELLED, finished_at=timezone.now()):
            job_event(job=job, kind="cancelled", message="Cancelled before it started.")
            audit_record(actor=actor, action="job.cancelled", obj=job, team=job.skill.team,
                         data={"skill": job.skill.slug, "before_start": True})
    job.refresh_from_db()
    return job


def job_mark_cancelled(*, job_id: int) -> bool:
    with transaction.atomic():
        job = TrainingJob.objects.get(pk=job_id)
        if not _cas(job_id, {J.QUEUED, J.RUNNING}, J.CANCELLED, finished_at=timezone.now()):
            return False
        job_event(job=job, kind="cancelled", message="Cancelled: partial artifacts removed, the parent is untouched.")
        audit_record(actor=None, action="job.cancelled", obj=job, team=job.skill.team, data={"skill": job.skill.slug})
    return True


def job_reap_stale(*, now=None) -> list[tuple[int, str]]:
    """Running jobs whose heartbeat stopped (their worker died): re-queue them to resume from their last
    checkpoint while attempts remain, else fail them. Then queued jobs whose message was lost
    (job_reclaim_lost). Returns (job id, new status) for each."""
    now = now or timezone.now()
    outcomes = _reap_silent(now) + job_reclaim_lost(now=now)
    return outcomes


def job_reclaim_lost(*, now=None) -> list[tuple[int, str]]:
    """Queued jobs whose broker message was lost: queued longer than ACCRETE_QUEUED_TIMEOUT_S while no job
    runs (a busy worker explains a wait; an idle one would have taken it). Each is sent again — delivering
    a job twice trains it once (job_start claims it) — up to ACCRETE_REQUEUE_MAX_ATTEMPTS times, then
    failed with the reason. Returns (job id, "queued" | "failed") for each."""
    now = now or timezone.now()
    if TrainingJob.objects.filter(status=J.RUNNING).exists():
        return []
    cutoff = now - timezone.timedelta(seconds=settings.ACCRETE_QUEUED_TIMEOUT_S)
    outcomes = []
    for job in TrainingJob.objects.filter(status=J.QUEUED, enqueued_at__lt=cutoff).select_related("skill__team"):
        waited = f"{settings.ACCRETE_QUEUED_TIMEOUT_S // 60} minutes"
        with transaction.atomic():
            if job.reenqueues < settings.ACCRETE_REQUEUE_MAX_ATTEMPTS:
                # Compare-and-set on when it was last sent: a job sent again meanwhile is not sent twice more.
                if TrainingJob.objects.filter(pk=job.pk, status=J.QUEUED, enqueued_at=job.enqueued_at).update(
                        enqueued_at=now, reenqueues=job.reenqueues + 1) == 1:
                    job_event(job=job, kind="reenqueued", message=f"No worker took the job in {waited} while the "
                              f"workers were idle: its message was presumably lost; sent again "
                              f"({job.reenqueues + 1} of {settings.ACCRETE_REQUEUE_MAX_ATTEMPTS}).")
                    audit_record(actor=None, action="job.reenqueued", obj=job, team=job.skill.team,
                                 data={"reenqueues": job.reenqueues + 1})
                    transaction.on_commit(lambda pk=job.pk: _enqueue_train(pk))
                    outcomes.append((job.pk, J.QUEUED))
            elif job_fail(job_id=job.pk, error=(
                    f"No training worker took the job in {waited}, {job.reenqueues + 1} time(s) while the workers "
                    "were idle: is a worker running on the train queue? No candidate was created; request the "
                    "training again.")):
                outcomes.append((job.pk, J.FAILED))
    return outcomes


def _reap_silent(now) -> list[tuple[int, str]]:
    cutoff = now - timezone.timedelta(seconds=settings.ACCRETE_HEARTBEAT_TIMEOUT_S)
    outcomes = []
    for job in TrainingJob.objects.filter(status=J.RUNNING, heartbeat_at__lt=cutoff):
        with transaction.atomic():
            if job.cancel_requested:
                if job_mark_cancelled(job_id=job.pk):
                    outcomes.append((job.pk, J.CANCELLED))
            elif job.attempts < settings.ACCRETE_JOB_MAX_ATTEMPTS:
                # Only if the heartbeat is still stale now: a worker that just reported keeps its job.
                if TrainingJob.objects.filter(pk=job.pk, status=J.RUNNING, heartbeat_at__lt=cutoff).update(
                        status=J.QUEUED, heartbeat_at=None, enqueued_at=now) == 1:
                    job_event(job=job, kind="requeued", message=f"Worker {job.worker or '?'} stopped responding; "
                              "re-queued to resume from the last checkpoint.")
                    audit_record(actor=None, action="job.requeued", obj=job, team=job.skill.team)
                    transaction.on_commit(lambda pk=job.pk: _enqueue_train(pk))
                    outcomes.append((job.pk, J.QUEUED))
            elif job_fail(job_id=job.pk, error=f"Worker {job.worker or '?'} stopped responding after "
                          f"{job.attempts} attempt(s); no candidate was created."):
                outcomes.append((job.pk, J.FAILED))
    return outcomes
