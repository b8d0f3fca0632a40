"""One training job over a process group: data-parallel ranks (torchrun; gloo on CPU, nccl on GPUs),
DeepSpeed ZeRO as an option, TRL's colocated vLLM as an option.

The worker's process stays the job's owner. `train_job` trains in-process when the worker's Scaling asks
for nothing more (the default); otherwise it writes the job's spec into work_dir/launch/ and starts

    python -m torch.distributed.run --standalone --nproc_per_node N -m workers.engine.distributed <spec.json>

in its own process group. Every rank runs the same train(); rank 0 alone writes the checkpoint extras, the
candidate (atomic, as in one process) and then result.json. Across the process boundary:

- progress: rank 0 appends one JSON line per log and checkpoint to progress.jsonl; the launcher tails it
  and calls the observer's on_progress / on_checkpoint in its own process (where the database is);
- cancel: the launcher asks the observer every CANCEL_CHECK_S and, on a yes, creates the `cancel` file;
  every rank looks for it at each step end and the ranks agree by an all-reduce, so all stop on the same
  step (a rank stopping alone would hang the others in the next collective). A rank whose launcher has died
  (the worker was killed) stops the same way, leaving its checkpoints for the retry;
- failure: a rank that raises writes error-rank<r>.json; torchrun stops the others; the launcher raises
  DistributedTrainingFailed with the first rank's error. No result.json, so no candidate is reported (and
  write_candidate's atomic rename means none is half-written).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from workers.engine.contract.config import TrainConfig
from workers.engine.contract.scaling import SETTING, Scaling, ScalingError
from workers.engine.data import TrainRow
from workers.engine.training import Progress, TrainingCancelled, TrainingObserver, TrainResult, train

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = "launch"  # inside work_dir; checkpoints stay beside it, so a retried launch resumes
SPEC, PROGRESS, CANCEL, RESULT, RANKS_LOG = "spec.json", "progress.jsonl", "cancel", "result.json", "ranks.log"
POLL_S = 0.25
CANCEL_CHECK_S = 2.0  # the observer's cancel check may be a database query
STOP_GRACE_S = 15.0


class DistributedTrainingFailed(RuntimeError):
    """A rank failed (or the process group died); the message carries the first rank's error."""


def train_job(
    *,
    base_dir: str | Path,
    rows: list[TrainRow],
    config: TrainConfig,
    output_dir: str | Path,
    work_dir: str | Path,
    observer: TrainingObserver | None = None,
    anchors: list[TrainRow] | None = None,
    scaling: Scaling | None = None,
) -> TrainResult:
    """train(), in this process or over the process group `scaling` asks for; the same result either way."""
    scaling = scaling or Scaling()
    if not scaling.launches:
        return train(base_dir=base_dir, rows=rows, config=config, output_dir=output_dir, work_dir=work_dir,
                     observer=observer, anchors=anchors)
    observer = observer or TrainingObserver()
    output_dir, work_dir = Path(output_dir), Path(work_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; a candidate's directory is written once")
    check_can_launch(scaling, config)
    run_dir = work_dir / LAUNCH_DIR
    _fresh(run_dir)
    spec = {
        "base_dir": str(base_dir), "output_dir": str(output_dir), "work_dir": str(work_dir),
        "rows": [asdict(row) for row in rows],
        "anchors": None if anchors is None else [asdict(row) for row in anchors],
        "config": config.to_dict(), "scaling": scaling.to_dict(), "launcher_pid": os.getpid(),
    }
    (run_dir / SPEC).write_text(json.dumps(spec))
    process = _start(run_dir, scaling.processes)
    code = _supervise(process, run_dir, observer)
    return _outcome(run_dir, code, scaling)


def check_can_launch(scaling: Scaling, config: TrainConfig) -> None:
    """Everything that can be refused before a process starts, named by the setting that asked for it."""
    import torch

    from workers.engine.device import resolve_device

    scaling.check_installed()
    scaling.per_process(config.batch_size, config.anchors_per_step)
    device = resolve_device(config.device)
    if device == "cuda" and torch.cuda.device_count() < scaling.processes:
        raise ScalingError(f"{SETTING['processes']}={scaling.processes} asks for one GPU per process, but this "
                           f"worker sees {torch.cuda.device_count()}: lower it or give the worker more GPUs")
    if device == "cpu" and (scaling.deepspeed or scaling.vllm != "off"):
        wanted = f"{SETTING['strategy']}={scaling.strategy}" if scaling.deepspeed else f"{SETTING['vllm']}={scaling.vllm}"
        raise ScalingError(f"{wanted} needs CUDA GPUs, but this job trains on the CPU (device={config.device!r}); "
                           f"on a CPU worker use {SETTING['strategy']}=ddp and {SETTING['vllm']}=off")


def _fresh(run_dir: Path) -> None:
    if run_dir.exists():
        for path in run_dir.iterdir():
            path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def _start(run_dir: Path, processes: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default; said here so it does not warn
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "workers.engine.distributed", str(run_dir / SPEC)]
    with open(run_dir / RANKS_LOG, "ab") as log:
        # Its own session: the group can be stopped as a whole without touching the worker.
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _supervise(process: subprocess.Popen, run_dir: Path, observer) -> int:
    """Forward progress and cancellation until the group exits; stop the group if anything here fails."""
    tail = _ProgressTail(run_dir / PROGRESS)
    next_cancel_check, cancel_sent = 0.0, False
    try:
        while True:
            code = process.poll()
            tail.forward(observer)
            if code is not None:
                return code
            if not cancel_sent and time.monotonic() >= next_cancel_check:
                next_cancel_check = time.monotonic() + CANCEL_CHECK_S
                if _call(observer, "should_cancel", False):
                    (run_dir / CANCEL).touch()
                    cancel_sent = True
            time.sleep(POLL_S)
    except BaseException:
        stop_group(process)
        raise


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to torchrun and its ranks, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _outcome(run_dir: Path, code: int, scaling: Scaling) -> TrainResult:
    result_path = run_dir / RESULT
    if result_path.is_file():
        # Rank 0 writes it after the candidate's atomic rename: a rank that fails after that (a teardown
        # error) does not undo a complete candidate.
        result = json.loads(result_path.read_text())
        if "cancelled" in result:
            raise TrainingCancelled(result["cancelled"])
        return TrainResult(**result)
    errors = sorted((json.loads(path.read_text()) for path in run_dir.glob("error-rank*.json")),
                    key=lambda error: error["time"])
    if errors:
        first = errors[0]
        raise DistributedTrainingFailed(f"rank {first['rank']} of {scaling.processes} failed: {first['error']}")
    lines = (run_dir / RANKS_LOG).read_text(errors="replace").strip().splitlines()[-12:]
    raise DistributedTrainingFailed(
        f"the {scaling.processes} training processes exited with code {code} and no rank reported an error "
        f"(killed, out of memory?); the last lines of {run_dir / RANKS_LOG}:\n" + "\n".join(lines))


def _call(observer, name: str, default, *args):
    method = getattr(observer, name, None)
    return method(*args) if method is not None else default


class _ProgressTail:
    """Reads the complete lines rank 0 appended since the last call."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, b""

    def forward(self, observer) -> None:
        if not self.path.is_file():
            return
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            event = json.loads(line)
            kind = event.pop("event")
            if kind == "progress":
                _call(observer, "on_progress", None, Progress(**event))
            elif kind == "checkpoint":
                _call(observer, "on_checkpoint", None, event["step"], event["path"])


# ---- inside each rank -------------------------------------------------------------------------------


class _RankObserver(TrainingObserver):
    """A rank's side of the launcher's observer: rank 0 writes progress lines; every rank checks the cancel
    file and agrees with the others."""

    def __init__(self, run_dir: Path, rank: int, launcher_pid: int):
        self.run_dir, self.rank, self.launcher_pid = run_dir, rank, launcher_pid

    def _append(self, event: dict) -> None:
        if self.rank != 0:
            return
        with open(self.run_dir / PROGRESS, "a") as handle:
            handle.write(json.dumps(event) + "\n")
            handle.flush()

    def on_progress(self, progress: Progress) -> None:
        self._append({"event": "progress", **asdict(progress)})

    def on_checkpoint(self, step: int, path: str) -> None:
        self._append({"event": "checkpoint", "step": step, "path": path})

    def should_cancel(self) -> bool:
        import torch
        import torch.distributed as dist

        local = (self.run_dir / CANCEL).exists() or not _alive(self.launcher_pid)
        if not (dist.is_available() and dist.is_initialized()):
            return local
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1.0 if local else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_json(path: Path, data: dict) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(data))
    os.replace(temp, path)


def main(argv: list[str] | None = None) -> int:
    """One rank: read the spec, train, report."""
    spec_path = Path((argv if argv is not None else sys.argv[1:])[0])
    run_dir = spec_path.parent
    rank = int(os.environ.get("RANK", "0"))
    try:
        spec = json.loads(spec_path.read_text())
        config = TrainConfig.from_dict(spec["config"])
        import torch

        if config.device != "cpu" and torch.cuda.is_available():
            # Before anything touches CUDA (the SFT replay generates before the Trainer picks the device).
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        anchors = spec["anchors"]
        result = train(
            base_dir=spec["base_dir"], rows=[TrainRow(**row) for row in spec["rows"]], config=config,
            output_dir=spec["output_dir"], work_dir=spec["work_dir"],
            anchors=None if anchors is None else [TrainRow(**row) for row in anchors],
            scaling=Scaling.from_dict(spec["scaling"]),
            observer=_RankObserver(run_dir, rank, spec["launcher_pid"]),
        )
    except TrainingCancelled as exc:
        outcome = {"cancelled": str(exc)}
    except BaseException as exc:
        _write_json(run_dir / f"error-rank{rank}.json",
                    {"rank": rank, "error": f"{type(exc).__name__}: {exc}", "time": time.time()})
        raise
    else:
        outcome = asdict(result)
    if rank == 0:
        _write_json(run_dir / RESULT, outcome)
    _leave_group()
    return 0


def _leave_group() -> None:
    """Wait for rank 0 (it writes the candidate after the others are done), then close the group: a rank
    that exits with it open aborts in gloo's threads, and torchrun would stop rank 0 mid-write."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
