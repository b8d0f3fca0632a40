"""One integrator's journey, through the API alone, on the real stack (PostgreSQL, Redis, a real Celery
worker training the tiny model): create a skill, upload, train, gate, approve by a second identity, see
production move — and the `version.production` webhook arrive at a real receiver, correctly signed."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from standardwebhooks.webhooks import Webhook

from tests.fixtures.skills import jsonl
from tests.fixtures.workers import FAST_SFT, wait_for

pytestmark = [pytest.mark.needs_services, pytest.mark.django_db(transaction=True)]


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that records every delivery (headers, body) and answers 200."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.received]

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receivers():
    made = []

    def make():
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def test_an_integrator_adds_a_skill_through_the_api_alone(api, people, tiny_production, workers, receivers):
    bob, alice, dave, carol = api("bob"), api("alice"), api("dave"), api("carol")
    legal_hook, hr_hook = receivers(), receivers()
    # webhooks: Legal wants its own events, HR every event it may receive
    legal = bob.post("/webhooks", {"team": "legal", "url": legal_hook.url,
                                   "events": ["job.succeeded", "gate.passed", "promotion.approved",
                                              "version.production"]})
    hr = carol.post("/webhooks", {"team": "hr", "url": hr_hook.url})
    assert legal.status_code == 201 and hr.status_code == 201, (legal.content, hr.content)
    secret = legal.json()["secret"]

    # a skill owner creates the skill; a contributor uploads its demonstrations and starts training
    created = bob.post("/skills", {"team": "legal", "slug": "say-ok", "name": "Say OK", "scorer": "contains",
                                   "max_new_tokens": 8})
    assert created.status_code == 201, created.content
    rows = jsonl([{"prompt": f"Request number {i}: acknowledge it.", "demonstration": "OK"} for i in range(24)])
    report = alice.upload("/skills/say-ok/uploads", {"file": SimpleUploadedFile("ok.jsonl", rows)})
    assert report.status_code == 200 and report.json()["ok"], report.content
    saved = alice.post(f"/uploads/{report.json()['token']}/confirm")
    assert saved.status_code == 201 and saved.json()["row_count"] == 24
    started = alice.post("/jobs", {"skill": "say-ok", "method": "sft", "config": FAST_SFT})
    assert started.status_code == 201, started.content
    job_id = started.json()["id"]

    # a real worker trains, evaluates and gates it
    workers.start()
    job = wait_for(lambda: (j := alice.get(f"/jobs/{job_id}").json())["status"] in {"succeeded", "failed"} and j,
                   what="training", timeout=300)
    assert job["status"] == "succeeded", job["error"] + workers.tail()
    assert job["step"] == job["total_steps"] > 0
    metrics = alice.get(f"/jobs/{job_id}/metrics").json()
    assert metrics and all(p["loss"] is None or p["loss"] > 0 for p in metrics)
    number = job["candidate_version"]
    version = wait_for(lambda: (v := alice.get(f"/versions/{number}").json())["status"] not in
                       {"candidate", "evaluating"} and v, what="the gate", timeout=300)
    assert version["status"] == "awaiting_approval", alice.get(f"/versions/{number}/gate").json()
    gate = alice.get(f"/versions/{number}/gate").json()
    assert gate["verdict"] == "pass" and gate["rows"][0]["after"] > gate["rows"][0]["before"]

    # the requester cannot approve; a second skill owner can, and production moves
    awaiting = dave.get("/promotion-requests", awaiting_me="true").json()["items"]
    assert [r["version"] for r in awaiting] == [number]
    request_id = awaiting[0]["id"]
    assert alice.post(f"/promotion-requests/{request_id}/decision", {"decision": "approve"}).status_code == 403
    decided = dave.post(f"/promotion-requests/{request_id}/decision", {"decision": "approve", "comment": "ship"})
    assert decided.status_code == 200 and decided.json()["status"] == "approved", decided.content
    production = carol.get("/production").json()
    assert production["number"] == number and production["manifest"]["skills"] == ["say-ok"]
    assert production["manifest"]["checksums"]

    # the webhooks: production's move reaches both teams, signed; HR hears nothing else of Legal's
    wait_for(lambda: "version.production" in legal_hook.events() and "version.production" in hr_hook.events(),
             what="the version.production webhooks", timeout=120)
    headers, body = next((h, b) for h, b in legal_hook.received if json.loads(b)["type"] == "version.production")
    payload = Webhook(secret).verify(body, headers)
    assert payload["data"]["version"] == number and payload["data"]["object"] == "version"
    assert {"job.succeeded", "gate.passed", "promotion.approved"} <= set(legal_hook.events())
    assert hr_hook.events() == ["version.production"]
    assert not any(b"Request number" in body for _, body in legal_hook.received + hr_hook.received)
    deliveries = bob.get(f"/webhooks/{legal.json()['id']}/deliveries").json()
    assert deliveries["count"] == len(legal_hook.received)
    assert all(d["status"] == "succeeded" and d["attempts"] == 1 for d in deliveries["items"])
