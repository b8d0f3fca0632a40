"""The GPU serving hook: a promotion queues the export of the new production version for vLLM; the task writes
its model files (verified, no adapter/) to <dir>/v<N>, points <dir>/production at them, keeps the one it
replaced, and tells a real local HTTP receiver (the reload URL). The task body runs here, without a broker."""

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from audit.models import AuditEvent
from config import dispatch
from registry.models import ModelVersion
from registry.services.gates import gate_evaluate, gate_start
from tests.fixtures.exports import flip_a_byte
from tests.fixtures.registry import gate_scores_record, promote
from tests.fixtures.skills import skill_with_cases
from workers.engine.artifacts import sha256_tree
from workers.engine.contract.storage import ArtifactTampered
from workers.tasks import RELOAD_MAX_RETRIES, export_production

pytestmark = pytest.mark.django_db


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (headers, JSON body) and answers the next status
    of its script (200 once the script runs out)."""

    def __init__(self):
        self.posts: list[dict] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.posts.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                       "json": json.loads(body)})
                self.send_response(receiver.script.pop(0) if receiver.script else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/reload"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def exports(tmp_path, settings, receiver):
    """Both settings on: the export folder in tmp_path, the reload URL at the receiver, the platform's key."""
    settings.ACCRETE_PRODUCTION_EXPORT_DIR = str(tmp_path / "exports")
    settings.ACCRETE_PRODUCTION_RELOAD_URL = receiver.url
    settings.ACCRETE_INFERENCE_KEY = "platform-key"
    return tmp_path / "exports"


@pytest.fixture
def queued(monkeypatch):
    """The tasks sent by name, as (name, args): the broker as the web process sees it."""
    from config.celery_app import app

    calls = []
    monkeypatch.setattr(app, "send_task", lambda name, args=(), **options: calls.append((name, list(args))))
    return calls


@pytest.fixture
def candidate_of(artifacts, candidate_files, people):
    """candidate_of(parent, skill) -> a candidate of `skill` trained from `parent`, its real files (merged
    tiny model, adapter/, accrete.json) in the store with their checksums, passed by the gate."""
    from registry.services.versions import version_create_candidate
    from training.models import TrainingJob

    def make(parent, skill):
        job = TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.first(),
                                         parent_version=parent, status="succeeded", requested_by=people["alice"])
        rel = Path("versions") / f"job-{job.pk}"
        shutil.copytree(candidate_files, artifacts / rel)
        version = version_create_candidate(job=job, artifact_path=str(rel), adapter_path=str(rel / "adapter"),
                                           checksums=sha256_tree(artifacts / rel), metrics={})
        version = gate_start(version=version)
        gate_scores_record(version, learned=True)
        assert gate_evaluate(candidate=version).verdict == "pass"
        return ModelVersion.objects.get(pk=version.pk)

    return make


def promote_and_queue(version, people, capture) -> ModelVersion:
    with capture(execute=True):
        return promote(version, requester=people["alice"], approver=people["bob"])


def model_checksums(version) -> dict:
    return {name: sha for name, sha in version.checksums.items() if not name.startswith("adapter/")}


def exported_folders(root: Path) -> set[str]:
    return {path.name for path in root.iterdir() if path.name.startswith("v")}


def test_a_promotion_exports_the_model_files_points_production_at_them_and_tells_the_reload_url(
        tiny_production, candidate_of, skill, people, exports, receiver, queued, django_capture_on_commit_callbacks):
    # given v2, a candidate of the tiny model the gate passed
    v2 = candidate_of(tiny_production, skill)
    # when bob approves alice's request, and an eval worker runs the task the commit queued
    promote_and_queue(v2, people, django_capture_on_commit_callbacks)
    assert queued == [(dispatch.EXPORT_PRODUCTION, [v2.pk])]
    export_production.apply(args=queued[0][1]).get()
    # then production resolves to <dir>/v2, whose files are the version's model files, checked, with no adapter
    folder = exports / f"v{v2.number}"
    assert (exports / "production").is_symlink() and (exports / "production").resolve() == folder.resolve()
    assert sha256_tree(folder) == model_checksums(v2) and "config.json" in model_checksums(v2)
    assert not (folder / "adapter").exists()
    # and the reload URL was told which version, where, under which name, with the platform's key
    [post] = receiver.posts
    assert post["json"] == {"version": v2.number, "path": str(folder), "model": "accrete-production"}
    assert post["headers"]["authorization"] == "Bearer platform-key"
    event = AuditEvent.objects.get(action="version.exported_for_serving", object_id=str(v2.pk))
    assert event.actor is None
    assert (event.data["exported"], event.data["reload"]) == (True, {"status": 200})


def test_each_promotion_switches_the_link_and_keeps_only_the_new_export_and_the_one_it_replaced(
        tiny_production, candidate_of, skill, people, exports, receiver, queued, django_capture_on_commit_callbacks):
    # given the base model exported as production (it became production at import, before any hook)
    export_production.apply(args=[tiny_production.pk]).get()
    assert (exports / "production").resolve() == (exports / f"v{tiny_production.number}").resolve()
    # when v2 and then v3 (trained from v2, another skill) are promoted and their tasks run
    v2 = candidate_of(tiny_production, skill)
    promote_and_queue(v2, people, django_capture_on_commit_callbacks)
    export_production.apply(args=[v2.pk]).get()
    assert exported_folders(exports) == {f"v{tiny_production.number}", f"v{v2.number}"}
    v3 = candidate_of(v2, skill_with_cases(people["legal"], "filing", cases=5))
    promote_and_queue(v3, people, django_capture_on_commit_callbacks)
    export_production.apply(args=[v3.pk]).get()
    # then production is v3, v2 (the one it replaced) is kept, and the base's export is gone
    assert (exports / "production").resolve() == (exports / f"v{v3.number}").resolve()
    assert exported_folders(exports) == {f"v{v2.number}", f"v{v3.number}"}
    assert [post["json"]["version"] for post in receiver.posts] == [tiny_production.number, v2.number, v3.number]
    # and a late delivery of v2's task (no longer production) changes nothing and tells nobody
    assert export_production.apply(args=[v2.pk]).get() is None
    assert (exports / "production").resolve() == (exports / f"v{v3.number}").resolve()
    assert len(receiver.posts) == 3


def test_a_tampered_stored_file_switches_nothing_and_the_error_names_it(
        tiny_production, candidate_of, skill, people, artifacts, exports, receiver, queued,
        django_capture_on_commit_callbacks):
    # given production exported at the base model, and v2 promoted while a stored file of it was changed
    export_production.apply(args=[tiny_production.pk]).get()
    v2 = candidate_of(tiny_production, skill)
    promote_and_queue(v2, people, django_capture_on_commit_callbacks)
    flip_a_byte(artifacts / v2.artifact_path / "model.safetensors")
    # when the task runs, then it refuses, naming the file
    with pytest.raises(ArtifactTampered, match="model.safetensors"):
        export_production.apply(args=[v2.pk]).get()
    # and the link still points at the base, no v2 folder (nor a half-written one) is left, nobody was told
    assert (exports / "production").resolve() == (exports / f"v{tiny_production.number}").resolve()
    assert not list(exports.glob(f"*v{v2.number}*"))
    assert [post["json"]["version"] for post in receiver.posts] == [tiny_production.number]
    event = AuditEvent.objects.get(action="version.exported_for_serving", object_id=str(v2.pk))
    assert event.data["exported"] is False and "model.safetensors" in event.data["error"]


def test_a_reload_url_answering_5xx_is_tried_again_until_it_answers(tiny_production, exports, receiver):
    # given a reloader that answers 503 twice (restarting), then 200
    receiver.script = [503, 503]
    # when the task runs (eagerly: Celery's retries run at once)
    export_production.apply(args=[tiny_production.pk]).get()
    # then it was told three times, and the 200 is what the audit log records
    assert [post["json"]["version"] for post in receiver.posts] == [tiny_production.number] * 3
    event = AuditEvent.objects.get(action="version.exported_for_serving", object_id=str(tiny_production.pk))
    assert event.data["reload"] == {"status": 200}


def test_a_reload_url_that_never_answers_is_recorded_after_the_last_retry(tiny_production, exports, receiver):
    receiver.script = [503] * (RELOAD_MAX_RETRIES + 1)
    export_production.apply(args=[tiny_production.pk]).get()
    assert len(receiver.posts) == RELOAD_MAX_RETRIES + 1
    event = AuditEvent.objects.get(action="version.exported_for_serving", object_id=str(tiny_production.pk))
    assert event.data["exported"] is True and event.data["reload"] == {"status": 503}


def test_without_an_export_folder_a_promotion_queues_no_export(
        tiny_production, candidate_of, skill, people, settings, queued, django_capture_on_commit_callbacks):
    # given the setting empty (the default)
    settings.ACCRETE_PRODUCTION_EXPORT_DIR = ""
    v2 = candidate_of(tiny_production, skill)
    # when v2 is promoted, then nothing is sent to the workers for it
    promote_and_queue(v2, people, django_capture_on_commit_callbacks)
    assert v2.status == "production"
    assert [name for name, _ in queued if name == dispatch.EXPORT_PRODUCTION] == []
