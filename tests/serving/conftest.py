"""The inference service as the tests run it: in this process, uvicorn on a free port in a thread, against the
test database (transactional, so its threads see what a test commits) — SQLite or PostgreSQL, whichever the
run has. The registry holds the tiny random Llama as v1 (production, a base import) and, through the
candidate fixture, versions with other weights (a second tiny model whose weights differ)."""

from __future__ import annotations

import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.workers import wait_for


@pytest.fixture(scope="session")
def tiny_variant_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with every weight nudged (seeded): same tokenizer and shapes, other answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-variant") / "model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=noise) * 0.3)
    model.save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


@pytest.fixture
def served_base(transactional_db, artifacts, base_version, tiny_model_dir):
    """v1, production: the tiny model's files where the registry says they are, with their real checksum."""
    from registry.models import ModelVersion
    from workers.engine.contract.storage import tree_sha256

    shutil.copytree(tiny_model_dir, artifacts / base_version.artifact_path)
    # The registry fixture records a placeholder checksum; every load verifies it, so record the real one, as
    # `import_base_model` does.
    ModelVersion.objects.filter(pk=base_version.pk).update(
        checksums={"tree": tree_sha256(artifacts / base_version.artifact_path)})
    base_version.refresh_from_db()
    return base_version


@pytest.fixture
def served_candidate(served_base, artifacts, make_candidate):
    """served_candidate(skill, model_dir) -> a candidate that passed the gate, its weights those of `model_dir`."""
    from registry.models import ModelVersion
    from workers.engine.artifacts import sha256_tree

    def make(skill, model_dir: Path):
        version = make_candidate(skill)
        shutil.copytree(model_dir, artifacts / version.artifact_path)
        # The checksums a training worker records with the candidate (the fixture's version has none).
        ModelVersion.objects.filter(pk=version.pk).update(checksums=sha256_tree(artifacts / version.artifact_path))
        version.refresh_from_db()
        return version

    return make


@pytest.fixture
def token_of(people):
    """token_of("alice") -> a fresh personal API token (the secret) made by the tokens service."""
    from tokens.services import token_create

    def make(name: str) -> str:
        return token_create(user=people[name], name=f"{name}'s inference token", actor=people[name]).secret

    return make


@dataclass
class Running:
    url: str
    service: object

    def metrics(self) -> dict:
        return httpx.get(f"{self.url}/metrics", timeout=10).json()

    def client(self, token: str):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=token, max_retries=0, timeout=60)


@pytest.fixture
def serve(served_base, settings):
    """serve(max_batch=8, wait_ms=20, poll_s=0.2, keep=3) -> Running: the service up on a free port (production
    loaded before it answers); stopped after the test."""
    import uvicorn

    from workers.serving.app import Service, create_app

    started = []

    def start(*, max_batch: int = 8, wait_ms: int = 20, poll_s: float = 0.2, keep: int = 3) -> Running:
        service = Service(max_batch=max_batch, wait_s=wait_ms / 1000, poll_s=poll_s, keep=keep)
        server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", lifespan="on"))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        started.append((server, thread, sock))
        wait_for(lambda: server.started or not thread.is_alive(), timeout=60, what="the inference service",
                 interval=0.05)
        assert server.started, "the inference service did not start (see the log above)"
        return Running(f"http://127.0.0.1:{sock.getsockname()[1]}", service)

    yield start
    for server, thread, sock in started:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
