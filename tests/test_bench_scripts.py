"""Every script under bench/ runs with its smallest settings on the tiny random Llama and prints its summary
line, so a benchmark that breaks fails `make test` rather than the next person who runs it.

Each runs as `make bench` runs it, a child process of its own: no SmolLM2 weights, no download (the hub is
offline), one torch thread. The benches that open a registry make their own: a SQLite file in a temp dir, or,
where PostgreSQL answers (tests/detect_services.py), a throwaway database `accrete_bench_<label>_<pid>` on that
server, never the suite's own."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
# Imported by the benches, not run.
HELPERS = {"scratch_db.py"}
# script → (its smallest settings, a line its report always prints). `{tokenizer}`: the tests' tokenizer
# folder (SmolLM2's when its GGUF is here, else a BPE trained on the spot).
SMOKE = {
    "api_latency.py": (["--quick"], "median p95 ratio"),
    "demo_readiness.py": (["--quick"], "readiness verdict (teacher/same against student):"),
    "gate_scaling.py": (["--quick"], "ratio 2 / 1:"),
    "generation.py": (["--tiny", "--tokenizer", "{tokenizer}"], "SDFT step (2 steps, batch 4): rollouts"),
    "queue_overhead.py": (["--quick"], "    ratio "),
    "retention.py": (["--quick"], "paired sdft+anchors − sdft over seeds [0]"),
    "sdft_vs_sft.py": (["--tiny", "--steps", "2", "--rows", "8", "--max-completion-length", "16",
                        "--tokenizer", "{tokenizer}"], "SDFT/SFT wall-clock per step:"),
    "serving.py": (["--quick"], "promotion of v2 -> first answer from it:"),
    "skill_retention.py": (["--quick"], "sft    step   2  skill "),
    "upload_validation.py": (["--quick"], "rows per CPU-second"),
}


def bench_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process; the suite's Redis is not a bench's.
           if k not in {"DJANGO_ALLOW_ASYNC_UNSAFE", "CELERY_BROKER_URL"}}
    env.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "TRL_EXPERIMENTAL_SILENCE": "1",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TMPDIR": str(tmp_path)})
    if env.get("DATABASE_URL"):
        # The benches take only the server from it and make a database of their own; a bench that used the
        # named one instead would find it missing and fail, not fill the suite's.
        env["DATABASE_URL"] = urlunsplit(urlsplit(env["DATABASE_URL"])._replace(path="/accrete_bench_smoke"))
    return env


def test_every_bench_script_has_a_smoke_run():
    scripts = {path.name for path in BENCH.glob("*.py")} - HELPERS

    assert scripts - set(SMOKE) == set(), "a bench script without an entry in SMOKE: give it its smallest settings"
    assert set(SMOKE) - scripts == set(), "SMOKE names a script that is not under bench/"
    assert all((BENCH / helper).is_file() for helper in HELPERS)


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_the_bench_runs_with_its_smallest_settings(script, tmp_path, request):
    # given
    path = BENCH / script
    flags, summary = SMOKE[script]
    if any("{tokenizer}" in flag for flag in flags):
        flags = [flag.format(tokenizer=request.getfixturevalue("tokenizer_dir")) for flag in flags]
    command = [sys.executable, str(path), *flags]

    # when
    done = subprocess.run(command, cwd=REPO, env=bench_env(tmp_path), capture_output=True, text=True, timeout=600)

    # then
    tail = f"\n--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(command[1:])} exited with {done.returncode}{tail}"
    assert summary in done.stdout, f"{script} did not print {summary!r}{tail}"
