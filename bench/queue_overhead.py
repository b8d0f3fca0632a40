"""Platform overhead: what the queue, the database and the worker add to a training job.

(a) latency from "request training" to "running" with an idle worker already up;
(b) the whole job on the tiny model through the platform (request → candidate version) versus the
    engine's train() called directly in one process with the same rows and config; their ratio.

Embedded default by default (SQLite + kombu's filesystem broker in a temp folder, removed at the end; a
DATABASE_URL or CELERY_BROKER_URL in the environment is ignored); pass --database-url/--broker-url for
PostgreSQL/Redis (their database and queues are used as they are: give it ones of its own).

    .venv/bin/python bench/queue_overhead.py [--steps 60] [--repeats 3] [--quick]

--quick: the smallest settings (4-step jobs, one latency sample; ~30 s with the worker's start), what
tests/test_bench_scripts.py runs.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="training steps per job (tiny model)")
    parser.add_argument("--repeats", type=int, default=3, help="latency samples")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--broker-url", default="")
    parser.add_argument("--quick", action="store_true", help="smallest settings: 4-step jobs, one latency sample")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 4, 1

    scratch = Path(tempfile.mkdtemp(prefix="accrete-queue-bench-"))
    try:
        return bench(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def bench(args, scratch: Path) -> int:
    env = {"ACCRETE_VAR": str(scratch / "var"), "DJANGO_SETTINGS_MODULE": "config.settings",
           "ACCRETE_PROGRESS_MIN_INTERVAL_S": "2", "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
    # The embedded default unless asked: a DATABASE_URL or CELERY_BROKER_URL of the calling shell (`make test`
    # exports both) is not this bench's to migrate and fill.
    for name, value in (("DATABASE_URL", args.database_url), ("CELERY_BROKER_URL", args.broker_url)):
        if value:
            env[name] = value
        else:
            os.environ.pop(name, None)
    os.environ.update(env)
    sys.path[:0] = [str(REPO), str(REPO / "platform")]
    import django

    django.setup()
    import torch
    from django.conf import settings
    from django.core.management import call_command

    torch.set_num_threads(1)
    call_command("migrate", verbosity=0)

    from registry.services.base_models import base_model_register
    from skills.services import demonstration_set_upload, skill_create
    from teams.models import Team
    from tests.fixtures.models import tiny_model_build, tokenizer_build
    from training.models import TrainingJob
    from training.services import job_request
    from workers.engine.contract.config import TrainConfig
    from workers.engine.contract.storage import tree_sha256
    from workers.engine.training import train
    from workers.pipeline import train_rows

    artifacts = Path(settings.ACCRETE_ARTIFACTS)
    tokenizer = tokenizer_build(scratch / "tokenizer")
    tiny_model_build(artifacts / "base" / "tiny", tokenizer)
    base_model_register(name="tiny", source="hf", source_path="bench", artifact_path="base/tiny",
                        sha256=tree_sha256(artifacts / "base" / "tiny"),  # every load verifies it
                        architecture="LlamaForCausalLM", num_parameters=1, context_length=2048, probes=[])
    team = Team.objects.create(name="Bench", slug="bench")
    skill = skill_create(team=team, slug="say-ok", name="Say OK", actor=None, scorer="contains", max_new_tokens=8)
    data = scratch / "ok.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Request {i}: acknowledge.", "demonstration": "OK"}) + "\n"
                            for i in range(24)))
    dset = demonstration_set_upload(skill=skill, path=data, filename="ok.jsonl", actor=None).demonstration_set
    config = {"max_steps": args.steps, "batch_size": 4, "learning_rate": 1e-3}

    worker_env = {**os.environ, "PYTHONPATH": str(REPO / "platform")}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config.celery_app", "worker", "-Q", "train",
                               "--concurrency", "1", "-l", "WARNING"], cwd=REPO, env=worker_env,
                              stdout=(scratch / "worker.log").open("w"), stderr=subprocess.STDOUT)
    try:
        def run_job(steps: int) -> tuple[float, float, float]:
            job = job_request(skill=skill, demonstration_set=dset, method="sft", config={**config, "max_steps": steps},
                              actor=None)
            t0 = time.perf_counter()
            running = done = None
            while done is None:
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited with {worker.returncode}:\n"
                                     f"{(scratch / 'worker.log').read_text()[-3000:]}")
                job.refresh_from_db()
                now = time.perf_counter()
                if running is None and job.status != "queued":
                    running = now
                if job.status in {"succeeded", "failed", "cancelled"}:
                    done = now
                time.sleep(0.05)
            assert job.status == "succeeded", job.error
            return running - t0, done - t0, done - running

        print("warming the worker up (imports, first model load) …", flush=True)
        run_job(2)
        latencies = [run_job(2)[0] for _ in range(args.repeats)]
        print(f"(a) request → running with an idle worker: median {statistics.median(latencies):.2f} s "
              f"(samples {', '.join(f'{x:.2f}' for x in latencies)}; the filesystem broker polls once a second)")

        _, platform_total, _ = run_job(args.steps)
        job = TrainingJob.objects.filter(status="succeeded").latest("pk")
        start = time.perf_counter()
        train(base_dir=artifacts / "base" / "tiny", rows=train_rows(dset),
              config=TrainConfig.from_dict(job.config), output_dir=scratch / "direct-out", work_dir=scratch / "direct-work")
        direct = time.perf_counter() - start
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    overhead = platform_total - direct
    print(f"(b) {args.steps}-step job on the tiny model: through the platform {platform_total:.1f} s, "
          f"engine called directly {direct:.1f} s")
    print(f"    ratio {platform_total / direct:.2f}x; overhead {overhead:.1f} s = {100 * overhead / direct:.1f} % of the job "
          f"(target ≤ 10 % of a 60-second job)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
