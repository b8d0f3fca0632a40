"""Real worker processes for the pipeline tests: Celery on Redis, the test's PostgreSQL database,
and a tiny random Llama as the production model. Skipped (loudly) without PostgreSQL and Redis."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate, *, timeout: float = 240, what: str = "condition", interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def artifacts(tmp_path, settings):
    settings.ACCRETE_ARTIFACTS = tmp_path / "artifacts"
    settings.ACCRETE_ARTIFACTS.mkdir()
    return settings.ACCRETE_ARTIFACTS


@pytest.fixture
def tiny_production(artifacts, tiny_model_dir):
    """The tiny model registered like an imported base model (with two probes it cannot answer)."""
    import shutil

    from registry.services.base_models import base_model_register
    from workers.engine.contract.probes import load_probes

    rel = Path("base") / "tiny"
    shutil.copytree(tiny_model_dir, artifacts / rel)
    return base_model_register(name="tiny", source="hf", source_path=str(tiny_model_dir), artifact_path=str(rel),
                               sha256="0" * 64, architecture="LlamaForCausalLM", num_parameters=1,
                               context_length=2048, probes=load_probes()[:2])


@pytest.fixture
def ok_skill(people, tiny_production, tmp_path):
    """A skill a tiny model can learn in seconds: every demonstration is the same short answer."""
    from skills.services import demonstration_set_upload, skill_create

    skill = skill_create(team=people["legal"], slug="say-ok", name="Say OK", actor=people["bob"], scorer="contains",
                         max_new_tokens=8)
    path = tmp_path / "ok.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Request number {i}: acknowledge it.", "demonstration": "OK"}) + "\n"
                            for i in range(24)))
    outcome = demonstration_set_upload(skill=skill, path=path, filename="ok.jsonl", actor=people["alice"])
    assert outcome.ok, outcome.report.problems
    return skill


FAST_SFT = {"learning_rate": 5e-3, "num_epochs": 8, "batch_size": 4, "lora_r": 8}


class Workers:
    def __init__(self, artifacts: Path):
        self.artifacts = artifacts
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def start(self, *, queues: str = "train,eval,default", name: str | None = None) -> subprocess.Popen:
        db = connection.settings_dict
        env = {**os.environ,
               "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
               "CELERY_BROKER_URL": os.environ["CELERY_BROKER_URL"], "ACCRETE_ARTIFACTS": str(self.artifacts),
               "ACCRETE_PROGRESS_MIN_INTERVAL_S": "0", "PYTHONPATH": str(REPO / "platform"),
               "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        name = name or f"w{len(self.procs)}"
        log = self.artifacts.parent / f"worker-{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker", "-Q", queues, "--concurrency", "1",
             "-n", f"{name}@%h", "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the worker and every process of its pool, as a crashed host would."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

    def tail(self) -> str:
        return "\n".join(f"--- {log.name}\n" + log.read_text()[-3000:] for log in self.logs if log.exists())


@pytest.fixture
def workers(artifacts):
    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()
    pool = Workers(artifacts)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from tests.tiny_models import tokenizer_build

    return tokenizer_build(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir):
    from tests.tiny_models import tiny_model_build

    return tiny_model_build(tmp_path_factory.mktemp("tiny-base") / "model", tokenizer_dir)
