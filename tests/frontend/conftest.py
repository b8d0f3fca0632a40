"""Fixtures for the browser views: signed-in clients, an HR skill, upload files, fake Celery tasks."""

import json
import types

import pytest
from django.test import Client

from tests.conftest import skill_with_suite


def jsonl(rows: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def good_rows(n: int = 30) -> list[dict]:
    return [{"prompt": f"Give the policy code for request number {i}.", "demonstration": f"POL-{i:03d}",
             "reference": f"POL-{i:03d}"} for i in range(n)]


@pytest.fixture
def good_file() -> bytes:
    return jsonl(good_rows())


@pytest.fixture
def bad_file() -> bytes:
    rows = good_rows()
    rows[2] = {"prompt": "A row without its demonstration."}  # line 3
    return jsonl(rows)


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    """Uploads land under a per-test VAR_DIR, so a test can list exactly what was written."""
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return settings.VAR_DIR


@pytest.fixture
def login(people):
    def client_for(name: str, **kwargs) -> Client:
        client = Client(**kwargs)
        client.force_login(people[name])
        return client

    return client_for


@pytest.fixture
def hr_skill(people):
    return skill_with_suite(people["hr"], slug="leave-codes", name="Leave codes", cases=5)


@pytest.fixture
def open_request(make_candidate, people):
    """A candidate that passed the gate, put up for approval by a skill owner of its team."""
    from registry.services.approvals import promotion_request_create

    def make(skill, *, by=None):
        version = make_candidate(skill)
        requester = by or (people["dave"] if skill.team == people["legal"] else people["carol"])
        return promotion_request_create(version=version, actor=requester)

    return make


@pytest.fixture
def fake_tasks(monkeypatch):
    """The broker as the web process sees it: records each task sent by name (short name, args, options)
    and answers with the result a test set; no worker, no engine."""
    from config.celery_app import app

    tasks = types.SimpleNamespace(calls=[], **{name: types.SimpleNamespace(result=None) for name in (
        "readiness_check", "train_job", "playground_generate", "gate_candidate")})

    def send_task(name, args=(), kwargs=None, **options):
        short = name.rsplit(".", 1)[-1]
        tasks.calls.append((short, tuple(args), options))
        return getattr(tasks, short).result

    monkeypatch.setattr(app, "send_task", send_task)
    return tasks
