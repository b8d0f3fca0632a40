"""What the Celery tasks do: turn rows into the engine's plain values, run the engine, and record the
outcome through the registry's services. Torch and the engine are imported inside the functions, so
importing this module (as the web process does, to enqueue tasks) loads neither."""

import json
import logging
import shutil
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from audit.models import AuditEvent
from evaluation import selectors
from evaluation import services as evaluations
from registry.errors import GateNotReady
from registry.models import GateResult, ModelVersion
from registry.services import gates
from skills.models import DemonstrationSet, EvalCase, EvalSuite
from skills.services import prompt_key
from teams.permissions import RoleRequired
from training import services as jobs
from training.models import TrainingJob
from workers.engine.contract.storage import (
    ArtifactMissing,
    ArtifactTampered,
    cached_copy,
    checksums_key,
    open_store,
    verify_files,
)

log = logging.getLogger(__name__)
HEARTBEAT_EVERY_S = 20


def artifact_store():
    """The store ACCRETE_ARTIFACTS names (workers.engine.contract.storage): a local folder or an S3 bucket."""
    return open_store(settings.ACCRETE_ARTIFACTS)


def artifacts_root() -> Path:
    """Where this process writes new artifacts (a candidate, an imported base) before they are published:
    the store itself when it is a local folder; with a remote store, a staging folder beside this host's
    cache (same filesystem, so a published version moves into the cache in one rename)."""
    if str(settings.ACCRETE_ARTIFACTS).startswith("s3://"):
        return Path(settings.ACCRETE_ARTIFACT_CACHE) / "staging"
    return Path(settings.ACCRETE_ARTIFACTS)


def artifact_publish(folder: Path, key: str) -> bool:
    """Put a folder written under artifacts_root() into the store at `key`. True when the store is remote
    (the folder is then a local staging copy, see artifact_keep_cached); a local store already holds it."""
    store = artifact_store()
    if store.local_dir(key) is not None:
        return False
    store.put_tree(folder, key)
    return True


def artifact_keep_cached(folder: Path, checksums: dict) -> None:
    """After a remote publish: the staging copy becomes this host's cached copy of the version (one rename;
    the next load here downloads nothing and still verifies it), or goes when the cache has one already."""
    cached = Path(settings.ACCRETE_ARTIFACT_CACHE) / checksums_key(checksums)
    if checksums and not cached.exists():
        try:
            folder.rename(cached)
            return
        except OSError:  # another process cached it meanwhile
            pass
    shutil.rmtree(folder, ignore_errors=True)


def _weights_deleted_message(version: ModelVersion) -> str:
    deleted = AuditEvent.objects.filter(action="artifact.deleted", object_type="ModelVersion",
                                        object_id=str(version.pk)).order_by("-pk").first()
    when = f" on {deleted.created_at:%Y-%m-%d}" if deleted is not None else ""
    return (f"The merged weights of v{version.number} were deleted by the retention policy{when} (a "
            f"{version.get_status_display().lower()} candidate kept longer than ACCRETE_RETENTION_DAYS). Its "
            f"LoRA adapter is kept at {version.adapter_path} in the artifact store: rebuild the weights by merging "
            f"it into v{version.parent.number if version.parent_id else '?'}, or train the skill again.")


def version_model_dir(version: ModelVersion) -> Path:
    """A version's files as a local folder a model loads from (serving, evaluation, readiness, the
    playground, a training job's parent). The one place a worker turns a version into a path, and every
    load passes here: the files are verified against the checksums recorded when they were written, and a
    mismatch refuses (ArtifactTampered, naming the file). With a local store that is the store's own folder;
    with a remote one, this host's cached copy (ACCRETE_ARTIFACT_CACHE, fetched on first use)."""
    label = f"v{version.number}"
    if not version.artifact_path:
        if version.adapter_path:
            raise ArtifactMissing(_weights_deleted_message(version))
        raise ArtifactMissing(f"{label} has no files in the artifact store.")
    if not version.checksums:
        raise ArtifactTampered(f"{label}: no checksums are recorded for {version.artifact_path}, so its files "
                               "cannot be verified. Refusing to load it.")
    store = artifact_store()
    folder = store.local_dir(version.artifact_path)
    if folder is None:
        return cached_copy(store, version.artifact_path, version.checksums, settings.ACCRETE_ARTIFACT_CACHE,
                           label=label)
    if not folder.is_dir():
        raise ArtifactMissing(f"{label}'s files are not in the artifact store: {folder} does not exist.")
    verify_files(folder, version.checksums, label=label)
    return folder


def job_dirs(job_id: int) -> tuple[Path, Path]:
    """(the candidate's final folder, the job's checkpoint folder)."""
    return artifacts_root() / "versions" / f"job-{job_id}", artifacts_root() / "work" / f"job-{job_id}"


class _Heartbeat:
    """Keeps the job's heartbeat fresh while the main thread trains (model load, long steps). A worker
    killed with SIGKILL takes this thread with it, and the reaper notices the silence."""

    def __init__(self, job_id: int):
        self.job_id, self.stop = job_id, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{job_id}")

    def _run(self):
        try:
            while not self.stop.wait(HEARTBEAT_EVERY_S):
                try:
                    jobs.job_heartbeat(job_id=self.job_id)
                except Exception:  # a locked database must not silence the heartbeat for good
                    log.warning("heartbeat of job %s failed; retrying", self.job_id, exc_info=True)
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


class _JobObserver:
    """The engine's observer: progress to the job row at a bounded rate, cancel checks between steps."""

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.last_write = 0.0
        self.cancel = False

    def on_progress(self, progress) -> None:
        now = time.monotonic()
        last = progress.step >= progress.total_steps
        if now - self.last_write < settings.ACCRETE_PROGRESS_MIN_INTERVAL_S and not last and progress.step > 1:
            return
        self.last_write = now
        self.cancel = jobs.job_record_progress(job_id=self.job_id, progress={
            "step": progress.step, "total_steps": progress.total_steps, "loss": progress.loss, "kl": progress.kl,
            "learning_rate": progress.learning_rate, "tokens_per_second": progress.tokens_per_second,
            "eta_seconds": progress.eta_seconds, "peak_memory_bytes": progress.peak_memory_bytes,
        })

    def should_cancel(self) -> bool:
        if not self.cancel:
            self.cancel = TrainingJob.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self.cancel

    def on_checkpoint(self, step: int, path: str) -> None:
        job = TrainingJob.objects.get(pk=self.job_id)
        jobs.job_event(job=job, kind="checkpoint", message=f"Checkpoint saved at step {step}.", data={"step": step})


def train_rows(dset: DemonstrationSet) -> list:
    from workers.engine.data import TrainRow

    return [TrainRow(prompt=row.prompt, demonstration=row.demonstration) for row in dset.rows.all()]


def rehearsal_rows(job: TrainingJob, mode: str, skills: list[str] | None) -> list:
    """The *training* rows of the skills already in the job's parent lineage (not the one being trained),
    as plain anchors or as SDFT rows with their demonstration. A prompt that is an eval case of any suite
    (a held-out row of this or any skill, or a probe) is never rehearsed: the gate must not score what the
    model was trained on, even when a later upload of a skill made a held-out row a training row."""
    from workers.engine.data import TrainRow

    if mode == "off":
        return []
    held_out = {prompt_key(prompt) for prompt in EvalCase.objects.values_list("prompt", flat=True)}
    rows, seen = [], set()
    version = job.parent_version
    while version is not None:
        earlier = version.job
        if (version.skill_id is not None and earlier is not None and version.skill_id != job.skill_id
                and (skills is None or version.skill.slug in skills)):
            for row in earlier.demonstration_set.rows.all():
                key = prompt_key(row.prompt)
                if key in held_out or key in seen:
                    continue
                seen.add(key)
                rows.append(TrainRow.anchor(row.prompt) if mode == "anchor" else TrainRow(
                    prompt=row.prompt, demonstration=row.demonstration, teacher_style=version.skill.teacher_style))
        version = version.parent
    return rows


def retention_rows(job: TrainingJob, config) -> list:
    """The anchor pool of a job: the shipped general anchors plus the rehearsed rows of earlier skills."""
    from workers.engine.contract.anchors import check_no_probe_overlap, load_anchor_pool
    from workers.engine.data import TrainRow

    if config.anchors_per_step == 0:
        return []
    pool = load_anchor_pool()
    if config.anchor_pool_sha256 and config.anchor_pool_sha256 != pool.sha256:
        raise ValueError(f"the anchor pool changed since job {job.pk} was requested (sha256 "
                         f"{config.anchor_pool_sha256[:12]} then, {pool.sha256[:12]} now); request the job again")
    # The test suite checks the shipped pool against the shipped probes; this checks it against the probes
    # this lineage is actually gated on (an operator may have imported others).
    probes = EvalCase.objects.filter(suite__kind=EvalSuite.Kind.PROBES, suite__base_model=job.parent_version.base_model)
    check_no_probe_overlap(pool, [case.prompt[-1]["content"] for case in probes])
    return [TrainRow.anchor(prompt) for prompt in pool.prompts] + rehearsal_rows(
        job, config.rehearsal, config.rehearsal_skills)


def run_training(job_id: int, worker: str) -> int | None:
    """Train one job. Returns the candidate's id, or None when this delivery had nothing to do. With
    ACCRETE_TRAIN_PROCESSES > 1 (or DeepSpeed, or vLLM) the engine runs it in a child process group and this
    process stays its owner: the observer below still sees every step, and a cancel still stops it."""
    from workers.engine.contract.config import TrainConfig
    from workers.engine.distributed import train_job
    from workers.engine.training import TrainingCancelled

    job = jobs.job_start(job_id=job_id, worker=worker)
    if job is None:
        return None
    output_dir, work_dir = job_dirs(job_id)
    try:
        if not (output_dir / "accrete.json").exists():  # a re-delivery after the weights were written
            config = TrainConfig.from_dict(job.config)
            with _Heartbeat(job_id):
                result = train_job(base_dir=version_model_dir(job.parent_version),
                                   rows=train_rows(job.demonstration_set), config=config,
                                   anchors=retention_rows(job, config), output_dir=output_dir, work_dir=work_dir,
                                   observer=_JobObserver(job_id), scaling=settings.ACCRETE_TRAIN_SCALING)
            metrics, checksums = result.metrics, result.checksums
        else:
            saved = json.loads((output_dir / "accrete.json").read_text())
            metrics, checksums = saved.get("metrics", {}), saved.get("checksums", {})
    except TrainingCancelled:
        shutil.rmtree(work_dir, ignore_errors=True)
        jobs.job_mark_cancelled(job_id=job_id)
        return None
    except Exception as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        jobs.job_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        raise
    rel = output_dir.relative_to(artifacts_root())
    remote = artifact_publish(output_dir, str(rel))  # before the row exists: no one looks for it earlier
    version = jobs.job_succeed(job_id=job_id, artifact_path=str(rel), adapter_path=str(rel / "adapter"),
                               checksums=checksums, metrics=metrics)
    shutil.rmtree(work_dir, ignore_errors=True)
    if remote:
        artifact_keep_cached(output_dir, checksums)
    return version.pk


def score_version_on(version: ModelVersion, suite: EvalSuite, generator) -> None:
    """Compute (once) a version's scores on a suite. Skips when they exist or are being computed."""
    score_version_on_suites(version, [suite], generator)


def suite_for_engine(version: ModelVersion, suite: EvalSuite):
    """A suite as the engine scores it (evaluation.SuiteToScore): an item per case the version answers, the
    suite's scorer and its answer budget."""
    from workers.engine.contract.probes import PROBE_MAX_NEW_TOKENS
    from workers.engine.data import EvalItem
    from workers.engine.evaluation import SuiteToScore

    # Probes the base model got wrong never count, so only the base answers all of them.
    cases = list(suite.cases.filter(counted=True) if version.parent_id else suite.cases.all())
    max_new = PROBE_MAX_NEW_TOKENS if suite.kind == EvalSuite.Kind.PROBES else suite.skill.max_new_tokens
    items = [EvalItem(case_id=str(case.pk), prompt=case.prompt, reference=case.reference,
                      scorer=case.scorer or None, scorer_options=case.scorer_options) for case in cases]
    skill = suite.skill
    return SuiteToScore(items, skill.scorer if skill else "exact", skill.scorer_options if skill else None, max_new)


def score_version_on_suites(version: ModelVersion, suites: list[EvalSuite], generator) -> list[EvalSuite]:
    """Compute (once) a version's scores on `suites` in ONE generation pass: claim each run (a suite whose scores
    exist or are being computed is skipped), generate the answers of every claimed suite together — each with
    its own budget and scorer — and complete each run. A failure fails every run of the pass not yet completed,
    with the error. `generator` is called (a _LazyGenerator) only when something was claimed. Returns the
    suites it scored."""
    from workers.engine.evaluation import evaluate_suites

    claimed = [(suite, run) for suite in suites
               if (run := evaluations.eval_run_claim(version=version, suite=suite)) is not None]
    if not claimed:
        return []
    started = time.monotonic()
    pending = [run for _, run in claimed]
    try:
        batches = [suite_for_engine(version, suite) for suite, _ in claimed]
        results = evaluate_suites(generator(), batches, batch_size=16)
        # A run's seconds: the pass's (weights load, generation, scoring) split by the suite's share of the
        # pass's cases, so the runs of one pass add up to its wall time.
        elapsed, total = time.monotonic() - started, sum(len(batch.items) for batch in batches) or 1
        for (_, run), batch, outputs in zip(claimed, batches, results, strict=True):
            evaluations.eval_run_complete(run=run, seconds=elapsed * len(batch.items) / total, outputs=[
                {"case_id": int(r.case_id), "output": r.output, "passed": r.passed, "score": r.score,
                 "extracted": r.extracted, "detail": r.detail} for r in outputs])
            pending.remove(run)
    except Exception as exc:
        for run in pending:
            evaluations.eval_run_fail(run=run, error=f"{type(exc).__name__}: {exc}")
        raise
    return [suite for suite, _ in claimed]


class _LazyGenerator:
    """Loads a version's weights the first time a score is actually computed (reused scores load nothing)."""

    def __init__(self, version: ModelVersion):
        self.version, self.loaded = version, None

    def __call__(self):
        if self.loaded is None:
            from workers.engine.generation import Generator

            self.loaded = Generator(version_model_dir(self.version))
        return self.loaded


def run_base_probes(version_id: int) -> None:
    version = ModelVersion.objects.select_related("base_model").get(pk=version_id)
    suite = EvalSuite.objects.filter(kind=EvalSuite.Kind.PROBES, base_model=version.base_model).order_by("-pk").first()
    if suite is None:
        return
    score_version_on(version, suite, _LazyGenerator(version))
    run = version.eval_runs.get(suite=suite)
    if run.status == run.Status.SUCCEEDED:
        evaluations.probes_calibrate(run=run)


GATE_PEER_POLL_S = 1.0


def gate_scores_compute(candidate: ModelVersion, *, score_parent_elsewhere=None, wait_s: float = 0.0) -> None:
    """Compute the scores the gate's plan lists that nobody has: one pass per version, each version's weights
    loaded once (and only when it has a suite to score), one model in memory at a time.

    `score_parent_elsewhere(candidate_id)` (the gate task: queue the parent's half on the eval queue) is
    called when the parent has suites nobody scores: a second eval worker, if one is up, claims and scores
    them while this one scores the candidate; then this one scores whatever of the parent is still unclaimed
    (with one eval worker, all of it: the queued task later finds it done). What that worker is still scoring
    is waited for up to `wait_s` (it started about when this pass did); past that, gate_evaluate says
    GateNotReady and the task retries."""
    plan: dict[int, tuple[ModelVersion, list[EvalSuite]]] = {}
    for subject, suite in gates.gate_plan(candidate=candidate):
        plan.setdefault(subject.pk, (subject, []))[1].append(suite)
    subjects = list(plan.values())  # the parent first, then the candidate
    if not subjects:
        return
    parent, parent_suites = subjects[0]
    handed_off = score_parent_elsewhere is not None and bool(
        selectors.suites_to_score(version=parent, suites=parent_suites))
    if handed_off:
        score_parent_elsewhere(candidate.pk)
        subjects.reverse()
    for subject, suites in subjects:
        score_version_on_suites(subject, suites, _LazyGenerator(subject))  # its weights go with the generator
    if handed_off:
        deadline = time.monotonic() + wait_s
        while (selectors.runs_in_progress(version=parent, suites=parent_suites).exists()
               and time.monotonic() < deadline):
            time.sleep(GATE_PEER_POLL_S)
        # a suite the other worker failed meanwhile (nothing, and no load, when all are in)
        score_version_on_suites(parent, parent_suites, _LazyGenerator(parent))


def run_gate_parent_scores(version_id: int) -> list[int]:
    """The parent's half of a gate, on a second eval worker: score the parent of an evaluating candidate on the
    gate's suites it has no scores for. Returns the ids of the suites it scored (none when the gate task, or
    an earlier gate, scored them first)."""
    version = ModelVersion.objects.select_related("parent").get(pk=version_id)
    if version.status != ModelVersion.Status.EVALUATING or version.parent is None:
        return []
    parent, suites = version.parent, gates.gate_suites(candidate=version)
    return [suite.pk for suite in score_version_on_suites(parent, suites, _LazyGenerator(parent))]


def run_candidate_gate(version_id: int, *, score_parent_elsewhere=None, wait_s: float = 0.0) -> str | None:
    """Gate a candidate through registry.services.gates: start it, compute the scores its plan lists (the
    parent's once, then reused; see gate_scores_compute for the two keyword arguments the gate task passes),
    decide, and on a pass put the job's promotion request up. Returns the verdict, or None when there is
    none (the version was not gated: stale, failed, or not a candidate)."""
    version = gates.gate_start(version=ModelVersion.objects.get(pk=version_id))
    if version.status == ModelVersion.Status.EVALUATING:
        try:
            gate_scores_compute(version, score_parent_elsewhere=score_parent_elsewhere, wait_s=wait_s)
            gate = gates.gate_evaluate(candidate=version)
        except GateNotReady:
            raise  # another worker is still scoring a suite: the task retries later
        except Exception as exc:
            gates.gate_fail(version=version, error=f"{type(exc).__name__}: {exc}")
            raise
        job = version.job
        if job is not None:
            jobs.job_event(job=job, kind=f"gate_{gate.verdict}",
                           message=f"Gate {gate.verdict}: " + ("; ".join(gate.reasons) or "no skill dropped."))
    job = version.job
    try:
        gates.gate_request_promotion(version=version)
    except RoleRequired as exc:  # the requester lost the role meanwhile: a contributor asks from the page
        jobs.job_event(job=job, kind="promotion_not_requested", message=f"Promotion not requested: {exc}")
    gate = GateResult.objects.filter(candidate_id=version.pk).first()
    return gate.verdict if gate is not None else None


def gate_give_up(version_id: int, error: str) -> bool:
    """The gate task ran out of retries waiting for scores: fail the gate with the reason (re-runnable)."""
    return gates.gate_fail(version=ModelVersion.objects.get(pk=version_id), error=error)


def run_readiness(demonstration_set_id: int, n: int = 10) -> dict:
    from dataclasses import asdict

    from registry.selectors import production_version
    from workers.engine.readiness import readiness_check

    dset = DemonstrationSet.objects.select_related("skill").get(pk=demonstration_set_id)
    version = production_version()
    skill = dset.skill
    report = readiness_check(version_model_dir(version), train_rows(dset), skill.teacher_style,
                             skill.scorer, skill.scorer_options, n=n, max_new_tokens=skill.max_new_tokens,
                             batch_size=max(16, 2 * n))  # the teacher's and the student's answers in one batch
    data = {**asdict(report), "version": version.number}
    DemonstrationSet.objects.filter(pk=dset.pk).update(readiness=data)
    return data


def run_playground(version_id: int, messages: list[dict], max_new_tokens: int) -> str:
    from workers.engine.generation import Generator

    version = ModelVersion.objects.get(pk=version_id)
    return Generator(version_model_dir(version)).generate([messages], max_new_tokens=max_new_tokens)[0]


class ReloadUnanswered(Exception):
    """ACCRETE_PRODUCTION_RELOAD_URL did not answer, or answered 5xx: the export task tries again later."""


PRODUCTION_LINK = "production"
SERVED_MODEL_NAME = "accrete-production"  # vLLM's --served-model-name in docker-compose.yml


def export_production(version_id: int, *, last_try: bool = True) -> dict | None:
    """Put a production version where the GPU server (vLLM, docker-compose profile gpu) loads it from: its model
    files — those the checksums record, adapter/ left out, as the API's part=model export — verified, in
    <ACCRETE_PRODUCTION_EXPORT_DIR>/v<N>; then `production` there pointed at that folder, every older v* but
    the one it replaced deleted, and ACCRETE_PRODUCTION_RELOAD_URL told. Safe to deliver twice: a complete
    folder is not written again, a link already in place is not switched. Returns the outcome, also audited as
    `version.exported_for_serving`; None when the version is no longer production (whatever replaced it has its
    own task). A stored file that does not match its checksum refuses (ArtifactTampered, naming the file) and
    nothing is switched. Raises ReloadUnanswered unless `last_try` when the reload URL does not answer."""
    import fcntl

    from audit.services import audit_record

    if not settings.ACCRETE_PRODUCTION_EXPORT_DIR:
        raise RuntimeError("ACCRETE_PRODUCTION_EXPORT_DIR is not set on this eval worker, but the process that "
                           "promoted the version has it: set the same value for web and the workers.")
    root = Path(settings.ACCRETE_PRODUCTION_EXPORT_DIR)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".switch.lock", "w") as lock:
        # One switch at a time, the status read under the lock: two promotions in quick succession (or a
        # promotion and a rollback) leave the link at whichever version is production, in any task order.
        fcntl.flock(lock, fcntl.LOCK_EX)
        version = ModelVersion.objects.select_related("skill").get(pk=version_id)
        if version.status != ModelVersion.Status.PRODUCTION:
            return None
        team = version.skill.team if version.skill_id else None
        try:
            folder = _production_export_write(version, root)
        except (ArtifactTampered, ArtifactMissing) as exc:
            audit_record(actor=None, action="version.exported_for_serving", obj=version, team=team,
                         data={"version": version.number, "exported": False, "error": str(exc)})
            raise
        if not ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.PRODUCTION).exists():
            return None  # replaced while its files were copied: the next switch deletes the unused folder
        replaced = _production_link_switch(root, folder)
        reload = _production_reload(version, folder, last_try=last_try)
        outcome = {"version": version.number, "path": str(folder), "exported": True, "replaced": replaced,
                   "reload": reload}
        audit_record(actor=None, action="version.exported_for_serving", obj=version, team=team, data=outcome)
    return outcome


def _production_export_write(version: ModelVersion, root: Path) -> Path:
    """<root>/v<N> with the version's model files, written once (temp sibling, fsync, rename)."""
    from workers.engine.artifacts import atomic_directory

    target = root / f"v{version.number}"
    if target.is_dir():  # only a complete export is ever renamed to this name
        return target
    source = version_model_dir(version)  # every stored file checked against its recorded sha256
    checksums = version.checksums
    if "tree" in checksums:  # an imported base model: one checksum over its whole folder, no adapter
        names = [p.relative_to(source).as_posix() for p in sorted(source.rglob("*")) if p.is_file()]
    else:
        checksums = {name: sha for name, sha in checksums.items() if not name.startswith("adapter/")}
        names = sorted(checksums)
    with atomic_directory(target) as temp:
        for name in names:
            (temp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, temp / name)
        # The copy is what vLLM loads: check it as well, or a file changed after version_model_dir read it
        # would be served unnoticed.
        verify_files(temp, checksums, label=f"the export of v{version.number}")
    return target


def _production_link_switch(root: Path, folder: Path) -> str | None:
    """Point <root>/production at `folder` in one rename; delete every older v* export but the one it replaced
    (kept, so a rollback to it is one switch). Returns the replaced folder's name (None: no switch needed)."""
    import os
    import re

    link = root / PRODUCTION_LINK
    replaced = os.readlink(link) if link.is_symlink() else None
    if replaced == folder.name:
        return None
    temp = root / f".{PRODUCTION_LINK}.{os.getpid()}.tmp"
    temp.unlink(missing_ok=True)
    # Relative: the vLLM container mounts the folder elsewhere (/data/exports), and the link must resolve there.
    temp.symlink_to(folder.name)
    os.replace(temp, link)  # IsADirectoryError when `production` is a real folder someone made: move it away
    for old in root.iterdir():
        # (and a half-written export a killed worker left: every write happens under the switch lock)
        unused = re.fullmatch(r"v\d+", old.name) and old.name not in {folder.name, replaced}
        if (unused or re.fullmatch(r"\.v\d+\.tmp-[0-9a-f]+", old.name)) and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    return replaced


def _production_reload(version: ModelVersion, folder: Path, *, last_try: bool) -> dict | None:
    """POST the switch to ACCRETE_PRODUCTION_RELOAD_URL: {"status": its answer} or {"error": why not}; None
    when the setting is empty. Raises ReloadUnanswered on no answer or a 5xx unless `last_try`."""
    import httpx

    url = settings.ACCRETE_PRODUCTION_RELOAD_URL
    if not url:
        return None
    headers = {"Authorization": f"Bearer {settings.ACCRETE_INFERENCE_KEY}"} if settings.ACCRETE_INFERENCE_KEY else {}
    try:
        # A reloader may answer only once the new weights are loaded: minutes at 7B.
        response = httpx.post(url, headers=headers, timeout=httpx.Timeout(600.0, connect=10.0),
                              json={"version": version.number, "path": str(folder), "model": SERVED_MODEL_NAME})
    except httpx.HTTPError as exc:
        problem = f"{url} did not answer ({exc or type(exc).__name__})"
        if not last_try:
            raise ReloadUnanswered(problem) from exc
        return {"error": problem}
    if response.status_code >= 500 and not last_try:
        raise ReloadUnanswered(f"{url} answered {response.status_code}")
    return {"status": response.status_code}
