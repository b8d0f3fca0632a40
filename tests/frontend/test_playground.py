"""The playground: the POST enqueues and answers at once (no web worker waits on a model); each answer panel
polls an endpoint that reads the task's state without blocking; an answer is readable only by the person
who asked. And the task itself: through the inference service when one is configured, else on the worker."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse


@pytest.fixture
def worker_result():
    """worker_result(task_id, value) / worker_result(task_id, error=exc): the task's outcome stored in the
    result backend as the worker that ran it stores it (forgotten after the test)."""
    from config.celery_app import app

    stored = []

    def store(task_id: str, value=None, *, error: Exception | None = None, state: str = "SUCCESS"):
        stored.append(task_id)
        if error is not None:
            app.backend.mark_as_failure(task_id, error)
        else:
            app.backend.store_result(task_id, value, state)

    yield store
    for task_id in stored:
        app.backend.forget(task_id)


def _ask(client, version, *, compare_with=None, prompt="Policy code for 42?", max_new_tokens=32):
    return client.post(reverse("playground"), {"prompt": prompt, "version": version.pk, "max_new_tokens": max_new_tokens,
                                               **({"compare_with": compare_with.pk} if compare_with else {})})


def _task_ids(fake_tasks) -> list[str]:
    return [options["task_id"] for name, _, options in fake_tasks.calls if name == "playground_generate"]


def test_the_post_enqueues_one_task_per_version_and_answers_at_once(login, skill, make_candidate, base_version,
                                                                     fake_tasks):
    other = make_candidate(skill)

    response = _ask(login("vera"), base_version, compare_with=other)

    # fake_tasks answers send_task with None: a view that waited on a result would fail here
    assert response.status_code == 200
    assert [args for _, args, _ in fake_tasks.calls] == [
        (base_version.pk, [{"role": "user", "content": "Policy code for 42?"}], 32),
        (other.pk, [{"role": "user", "content": "Policy code for 42?"}], 32)]
    page = response.content.decode()
    first, second = _task_ids(fake_tasks)
    assert first != second
    for task_id in (first, second):
        assert f'hx-get="{reverse("playground_answer", args=[task_id])}"' in page
    assert page.count("Still generating") == 2 and base_version.label in page and other.label in page


def test_an_answer_panel_says_generating_until_the_answer_is_in(login, base_version, fake_tasks, worker_result):
    vera = login("vera")
    _ask(vera, base_version)
    (task_id,) = _task_ids(fake_tasks)
    url = reverse("playground_answer", args=[task_id])

    waiting = vera.get(url).content.decode()
    worker_result(task_id, {"text": "POL-042", "seconds": 1.2, "tokens": 3, "source": "inference service"})
    answered = vera.get(url).content.decode()

    assert "Still generating" in waiting and f'hx-get="{url}"' in waiting  # it keeps polling
    assert "POL-042" in answered and "1.2 s" in answered and "by the inference service" in answered
    assert "hx-get" not in answered and "Still generating" not in answered  # and stops


def test_a_task_a_worker_has_started_says_generating(login, base_version, fake_tasks, worker_result):
    vera = login("vera")
    _ask(vera, base_version)
    (task_id,) = _task_ids(fake_tasks)

    worker_result(task_id, None, state="STARTED")
    panel = vera.get(reverse("playground_answer", args=[task_id])).content.decode()

    assert "Still generating" in panel and "queued" not in panel


def test_a_failed_generation_shows_the_workers_message(login, base_version, fake_tasks, worker_result):
    vera = login("vera")
    _ask(vera, base_version)
    (task_id,) = _task_ids(fake_tasks)

    worker_result(task_id, error=RuntimeError("The inference service answered 404 for v1: no such model"))
    panel = vera.get(reverse("playground_answer", args=[task_id])).content.decode()

    assert "The worker could not answer" in panel and "no such model" in panel and "hx-get" not in panel


def test_a_prompt_no_worker_takes_says_how_to_start_one(login, base_version, fake_tasks):
    from frontend.views_playground import NO_WORKER_AFTER_S, SESSION_TASKS

    vera = login("vera")
    _ask(vera, base_version)
    (task_id,) = _task_ids(fake_tasks)
    session = vera.session
    session[SESSION_TASKS][task_id]["at"] -= NO_WORKER_AFTER_S + 1
    session.save()

    panel = vera.get(reverse("playground_answer", args=[task_id])).content.decode()

    assert "make worker" in panel and "Still generating" in panel and "hx-get" in panel


def test_another_user_cannot_read_an_answer(login, base_version, fake_tasks, worker_result):
    _ask(login("vera"), base_version, prompt="a private question")
    (task_id,) = _task_ids(fake_tasks)
    worker_result(task_id, {"text": "a private answer"})

    for name in ("alice", "carol", "admin"):
        response = login(name).get(reverse("playground_answer", args=[task_id]))
        assert response.status_code == 404 and "a private answer" not in response.content.decode()


def test_an_unknown_task_is_not_found(login, people):
    response = login("vera").get(reverse("playground_answer", args=["00000000-0000-4000-8000-000000000000"]))

    assert response.status_code == 404


class _InferenceService(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions that records what it was asked."""

    asked: list = []
    status = 200

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.asked.append({"path": self.path, "authorization": self.headers["Authorization"], "body": body})
        if self.status != 200:
            answer = {"error": {"message": f"The model {body['model']} does not exist", "type": "invalid_request_error"}}
        else:
            answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "POL-042"},
                                   "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
        data = json.dumps(answer).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def inference_service(settings):
    handler = type("Service", (_InferenceService,), {"asked": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ACCRETE_INFERENCE_URL = f"http://127.0.0.1:{server.server_port}/"
    settings.ACCRETE_INFERENCE_KEY = "acc_platform_key"
    yield handler
    server.shutdown()
    server.server_close()


def test_the_task_asks_the_inference_service_for_the_version_with_the_platforms_key(inference_service,
                                                                                     base_version):
    from workers.tasks import playground_generate

    answer = playground_generate(base_version.pk, [{"role": "user", "content": "hi"}], 16)

    (asked,) = inference_service.asked
    assert asked["path"] == "/v1/chat/completions" and asked["authorization"] == "Bearer acc_platform_key"
    assert asked["body"]["model"] == f"v{base_version.number}" and asked["body"]["max_tokens"] == 16
    assert asked["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert answer["text"] == "POL-042" and answer["tokens"] == 3 and answer["source"] == "inference service"


def test_the_task_says_what_the_inference_service_refused(inference_service, base_version):
    from workers.tasks import playground_generate

    inference_service.status = 404

    with pytest.raises(RuntimeError, match=f"answered 404 for v{base_version.number}: The model v"):
        playground_generate(base_version.pk, [{"role": "user", "content": "hi"}], 16)


def test_the_task_names_an_inference_service_that_does_not_answer(settings, base_version):
    from workers.tasks import playground_generate

    settings.ACCRETE_INFERENCE_URL = "http://127.0.0.1:9"  # discard: nothing listens

    with pytest.raises(RuntimeError, match="inference service at http://127.0.0.1:9 did not answer"):
        playground_generate(base_version.pk, [{"role": "user", "content": "hi"}], 16)


def test_without_an_inference_service_the_worker_generates_from_the_versions_files(settings, stored_candidate,
                                                                                   skill):
    from workers.tasks import playground_generate

    settings.ACCRETE_INFERENCE_URL = ""
    version = stored_candidate(skill)

    answer = playground_generate(version.pk, [{"role": "user", "content": "What is the travel policy code?"}], 4)

    assert isinstance(answer["text"], str) and answer["source"] == "eval worker" and answer["seconds"] >= 0
