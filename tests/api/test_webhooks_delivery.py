"""Webhook delivery: events a service records reach a real local HTTP receiver, signed (Standard Webhooks),
retried with backoff under the same webhook-id, given up on after the last attempt; each team receives its
own events and everyone's production changes, and no payload carries a case's contents."""

import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from registry.services.approvals import approval_decide
from skills.models import EvalCase
from teams.permissions import RoleRequired
from tests.fixtures.registry import promote
from tests.fixtures.workers import wait_for
from training.models import TrainingJob
from training.services import job_fail
from webhooks.models import WebhookDelivery
from webhooks.services import (
    webhook_deliver,
    webhook_deliveries_overdue,
    webhook_endpoint_create,
    webhook_endpoint_update,
    webhook_redeliver,
)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (path, headers, body, when) and answers the next
    status of its script — 200 once the script runs out; "slow" sleeps past the sender's timeout first."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                              "body": body, "at": time.monotonic()})
                    answer = receiver.script.pop(0) if receiver.script else 200
                if answer == "slow":
                    time.sleep(1.0)
                    answer = 200
                self.send_response(answer)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def answer(self, *statuses) -> None:
        with self.lock:
            self.script = list(statuses)

    def received(self, path: str | None = None) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def verified(request: dict, secret: str) -> dict:
    """The payload of a received request whose Standard Webhooks signature checks out with `secret`."""
    return Webhook(secret).verify(request["body"], request["headers"])


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


@pytest.fixture
def requested(people, skill, open_request, receiver):
    """Legal's endpoint (bob's) for promotion requests, and the delivery of one: (endpoint, delivery)."""
    endpoint = webhook_endpoint_create(team=people["legal"], url=receiver.url, actor=people["bob"],
                                       events=["promotion.requested"])
    request = open_request(skill)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.event_type == "promotion.requested" and delivery.payload["data"]["id"] == request.pk
    return endpoint, delivery


# --- one attempt at a time (no broker) ------------------------------------------------------------


def test_a_500_leaves_the_delivery_pending_until_the_base_wait(requested, receiver, settings):
    # given
    settings.ACCRETE_WEBHOOK_RETRY_BASE_S = 7.0
    endpoint, delivery = requested
    receiver.answer(500)
    # when
    before = timezone.now()
    wait = webhook_deliver(delivery.pk)
    after = timezone.now()
    # then
    delivery.refresh_from_db()
    assert wait == 7.0
    assert delivery.status == "pending" and delivery.attempts == 1 and delivery.response_status == 500
    assert delivery.last_error.startswith("HTTP 500")
    assert before + timedelta(seconds=7) <= delivery.next_attempt_at <= after + timedelta(seconds=7)
    assert [entry["status"] for entry in delivery.log] == [500]
    assert verified(receiver.received()[0], endpoint.secret) == delivery.payload


def test_a_200_marks_the_delivery_delivered(requested, receiver):
    # given
    endpoint, delivery = requested
    # when
    wait = webhook_deliver(delivery.pk)
    # then
    delivery.refresh_from_db()
    assert wait is None
    assert delivery.status == "succeeded" and delivery.attempts == 1 and delivery.response_status == 200
    assert delivery.delivered_at is not None and delivery.latency_ms is not None and delivery.next_attempt_at is None
    (request,) = receiver.received()
    assert request["headers"]["webhook-id"] == delivery.event_id
    assert request["headers"]["content-type"] == "application/json"
    assert verified(request, endpoint.secret) == delivery.payload
    # and a delivered delivery is not sent again
    assert webhook_deliver(delivery.pk) is None
    assert len(receiver.received()) == 1


def test_a_signature_made_with_another_secret_does_not_verify(requested, receiver):
    endpoint, delivery = requested
    webhook_deliver(delivery.pk)
    with pytest.raises(WebhookVerificationError):
        verified(receiver.received()[0], "whsec_" + "A" * 32)


def test_it_gives_up_after_the_last_attempt_with_doubling_waits(requested, receiver, settings):
    # given a receiver that keeps failing
    settings.ACCRETE_WEBHOOK_RETRY_BASE_S = 2.0
    settings.ACCRETE_WEBHOOK_MAX_ATTEMPTS = 3
    endpoint, delivery = requested
    receiver.answer(500, 502, 503)
    # when it is tried four times, each time its retry is due
    waits = []
    for _ in range(4):
        WebhookDelivery.objects.filter(pk=delivery.pk, status="pending").update(next_attempt_at=timezone.now())
        waits.append(webhook_deliver(delivery.pk))
    # then
    delivery.refresh_from_db()
    assert waits == [2.0, 4.0, None, None]
    assert delivery.status == "failed" and delivery.attempts == 3 and delivery.next_attempt_at is None
    assert [entry["status"] for entry in delivery.log] == [500, 502, 503]
    requests = receiver.received()
    assert len(requests) == 3  # the fourth call found nothing pending to send
    assert {r["headers"]["webhook-id"] for r in requests} == {delivery.event_id}
    assert all(verified(r, endpoint.secret) == delivery.payload for r in requests)


def test_a_refused_connection_is_recorded_not_raised(requested, people, settings):
    # given an endpoint where nothing listens
    settings.ACCRETE_WEBHOOK_RETRY_BASE_S = 3.0
    endpoint, delivery = requested
    webhook_endpoint_update(endpoint=endpoint, actor=people["bob"], url=closed_port_url())
    # when
    wait = webhook_deliver(delivery.pk)
    # then
    delivery.refresh_from_db()
    assert wait == 3.0
    assert delivery.status == "pending" and delivery.attempts == 1 and delivery.response_status is None
    assert "ConnectError" in delivery.last_error and delivery.log[0]["error"] == delivery.last_error


def test_a_receiver_slower_than_the_timeout_is_an_error(requested, receiver, settings):
    settings.ACCRETE_WEBHOOK_TIMEOUT_S = 0.2
    endpoint, delivery = requested
    receiver.answer("slow")
    assert webhook_deliver(delivery.pk) is not None
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert "Timeout" in delivery.last_error


def test_a_second_message_for_a_delivery_not_due_yet_sends_nothing(requested, receiver, settings):
    # given a delivery whose first attempt failed: its retry is due in 5 s
    settings.ACCRETE_WEBHOOK_RETRY_BASE_S = 5.0
    endpoint, delivery = requested
    receiver.answer(500)
    assert webhook_deliver(delivery.pk) == 5.0
    # when the same task arrives again at once (Celery delivers at least once; the sweep re-queues)
    assert webhook_deliver(delivery.pk) is None
    # then the receiver saw one request, and the retry still stands
    delivery.refresh_from_db()
    assert len(receiver.received()) == 1 and delivery.attempts == 1 and delivery.status == "pending"
    # and once it is due, it is sent
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert webhook_deliver(delivery.pk) is None
    delivery.refresh_from_db()
    assert len(receiver.received()) == 2 and delivery.status == "succeeded" and delivery.attempts == 2


def test_a_turned_off_endpoint_gets_no_more_retries(requested, receiver, people):
    # given a failed first attempt
    endpoint, delivery = requested
    receiver.answer(500)
    webhook_deliver(delivery.pk)
    # when bob turns the endpoint off before the retry is due
    webhook_endpoint_update(endpoint=endpoint, actor=people["bob"], active=False)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    # then the retry sends nothing and the delivery ends
    assert webhook_deliver(delivery.pk) is None
    delivery.refresh_from_db()
    assert len(receiver.received()) == 1
    assert delivery.status == "failed" and delivery.attempts == 1 and "turned off" in delivery.last_error
    assert webhook_deliveries_overdue(now=timezone.now() + timedelta(hours=1)) == []


# --- who receives what ----------------------------------------------------------------------------


def test_another_team_receives_production_changes_but_not_the_teams_own_events(people, skill, open_request,
                                                                                make_candidate, receiver):
    # given an endpoint of HR's and one of Legal's, for every event
    hr = webhook_endpoint_create(team=people["hr"], url=receiver.url + "/hr", actor=people["carol"])
    legal = webhook_endpoint_create(team=people["legal"], url=receiver.url + "/legal", actor=people["bob"])
    # when a Legal candidate is blocked, another passes its gate, is asked for, approved and promoted, and a
    # Legal job fails
    make_candidate(skill, status="blocked")
    request = open_request(skill)
    approval_decide(request=request, approver=people["bob"], decision="approve")
    job = TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.get(),
                                     parent_version=request.version, status="running", requested_by=people["alice"])
    assert job_fail(job_id=job.pk, error="CUDA out of memory")
    # then HR's endpoint gets the production change only; Legal's gets all of it
    assert list(hr.deliveries.values_list("event_type", flat=True)) == ["version.production"]
    assert sorted(legal.deliveries.values_list("event_type", flat=True)) == [
        "gate.blocked", "gate.passed", "job.failed", "promotion.approved", "promotion.requested",
        "version.production"]
    # and every delivery, sent, verifies and carries no case's prompt or reference
    for delivery in WebhookDelivery.objects.all():
        assert webhook_deliver(delivery.pk) is None
    assert len(receiver.received("/hooks/hr")) == 1 and len(receiver.received("/hooks/legal")) == 6
    assert all(verified(r, legal.secret)["data"]["team"] == "legal" for r in receiver.received("/hooks/legal"))
    production = verified(receiver.received("/hooks/hr")[0], hr.secret)
    assert production["type"] == "version.production"
    assert production["data"]["version"] == request.version.number
    contents = [text for case in EvalCase.objects.all() for text in (case.prompt[-1]["content"], case.reference)]
    assert "policy-codes question 0" in contents
    for received in receiver.received():
        body = received["body"].decode()
        assert not [text for text in contents if text in body], body


def test_an_endpoint_gets_only_the_events_it_subscribes_to(people, skill, open_request, receiver):
    endpoint = webhook_endpoint_create(team=people["legal"], url=receiver.url, actor=people["bob"],
                                       events=["gate.blocked", "promotion.requested"])
    open_request(skill)
    assert list(endpoint.deliveries.values_list("event_type", flat=True)) == ["promotion.requested"]


def test_an_inactive_endpoint_gets_nothing(people, skill, open_request, receiver):
    endpoint = webhook_endpoint_create(team=people["legal"], url=receiver.url, actor=people["bob"])
    webhook_endpoint_update(endpoint=endpoint, actor=people["bob"], active=False)
    open_request(skill)
    assert not endpoint.deliveries.exists()


# --- redelivery and the sweep ---------------------------------------------------------------------


def test_a_redelivery_sends_the_same_event_again_as_a_new_entry(requested, receiver, people):
    # given a delivered event
    endpoint, delivery = requested
    webhook_deliver(delivery.pk)
    # when bob sends it again
    again = webhook_redeliver(delivery=delivery, actor=people["bob"])
    assert again.pk != delivery.pk and again.status == "pending"
    assert webhook_deliver(again.pk) is None
    # then
    again.refresh_from_db()
    assert again.status == "succeeded" and again.event_id == delivery.event_id and again.redelivery_of == delivery
    assert again.payload == delivery.payload
    first, second = receiver.received()
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == delivery.event_id
    assert verified(second, endpoint.secret) == delivery.payload


def test_only_the_teams_skill_owners_redeliver(requested, people):
    endpoint, delivery = requested
    for name in ("carol", "alice"):
        with pytest.raises(RoleRequired):
            webhook_redeliver(delivery=delivery, actor=people[name])
    assert WebhookDelivery.objects.count() == 1


def test_the_sweep_finds_a_pending_delivery_over_five_minutes_late(people, skill, open_request, receiver):
    # given three pending deliveries (gate.passed, promotion.requested, promotion.approved) and a failed one
    endpoint = webhook_endpoint_create(team=people["legal"], url=receiver.url, actor=people["bob"],
                                       events=["gate.passed", "promotion.requested", "promotion.rejected"])
    approval_decide(request=open_request(skill), approver=people["bob"], decision="reject")
    late, fresh, given_up = endpoint.deliveries.order_by("pk")
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=late.pk).update(next_attempt_at=now - timedelta(minutes=6))
    WebhookDelivery.objects.filter(pk=fresh.pk).update(next_attempt_at=now - timedelta(minutes=4))
    WebhookDelivery.objects.filter(pk=given_up.pk).update(status="failed", next_attempt_at=now - timedelta(hours=1))
    # when / then
    assert webhook_deliveries_overdue() == [late.pk]


# --- through a real worker ------------------------------------------------------------------------


@pytest.mark.needs_services
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_retries_until_the_receiver_takes_it(people, skill, make_candidate, receiver, workers,
                                                           monkeypatch):
    # given a worker that retries after 0.5 s, then 1 s, and a receiver that fails twice
    monkeypatch.setenv("ACCRETE_WEBHOOK_RETRY_BASE_S", "0.5")
    workers.start(queues="webhooks")
    version = make_candidate(skill)
    endpoint = webhook_endpoint_create(team=people["legal"], url=receiver.url, actor=people["bob"],
                                       events=["version.production"])
    receiver.answer(500, 500, 200)
    # when the version is promoted
    promote(version, requester=people["dave"], approver=people["bob"])
    # then the delivery succeeds on its third attempt, under one webhook-id, and is not sent again
    delivery = endpoint.deliveries.get()

    def settled():
        delivery.refresh_from_db()
        return delivery.status != "pending"

    wait_for(settled, timeout=40, what="the webhook delivery", interval=0.2)
    assert delivery.status == "succeeded" and delivery.attempts == 3, (delivery.log, workers.tail())
    time.sleep(3)
    requests = receiver.received()
    assert len(requests) == 3, workers.tail()
    assert {r["headers"]["webhook-id"] for r in requests} == {delivery.event_id}
    assert all(verified(r, endpoint.secret)["type"] == "version.production" for r in requests)
    first, second, third = (r["at"] for r in requests)
    assert second - first >= 0.4 and third - second >= 0.9  # the backoff doubles
    # and a redelivery goes through the worker too
    again = webhook_redeliver(delivery=delivery, actor=people["bob"])
    wait_for(lambda: WebhookDelivery.objects.get(pk=again.pk).status == "succeeded", timeout=20,
             what="the redelivery", interval=0.2)
    assert len(receiver.received()) == 4
    assert receiver.received()[3]["headers"]["webhook-id"] == delivery.event_id


# --- receivers inside the platform's network, bad URLs, rotating the secret --------------------------


def test_a_receiver_inside_the_platforms_network_is_refused_unless_allowed(requested, receiver, settings):
    # given production's setting: no receivers on loopback or private addresses
    settings.ACCRETE_WEBHOOK_ALLOW_PRIVATE = False
    endpoint, delivery = requested
    # when
    webhook_deliver(delivery.pk)
    # then nothing was sent, and the log says why
    delivery.refresh_from_db()
    assert receiver.received() == []
    assert delivery.attempts == 1 and "internal address" in delivery.last_error and "127.0.0.1" in delivery.last_error


def test_only_the_status_of_a_failed_answer_is_kept(requested, receiver):
    endpoint, delivery = requested
    receiver.answer(500)

    webhook_deliver(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.last_error == "HTTP 500" and delivery.log[-1]["error"] == "HTTP 500"


def test_a_url_python_cannot_parse_is_refused_with_a_message(people):
    from webhooks.services import WebhookRefused

    for url in ("http://[::1", "ftp://example.org/x", "https://", "javascript:alert(1)"):
        with pytest.raises(WebhookRefused, match="http:// or https://"):
            webhook_endpoint_create(team=people["legal"], url=url, actor=people["bob"])


def test_rotating_the_secret_through_the_api_returns_the_new_one_once(api, people, requested):
    endpoint, _ = requested
    bob = api("bob")

    rotated = bob.patch(f"/webhooks/{endpoint.pk}", {"rotate_secret": True})

    endpoint.refresh_from_db()
    assert rotated.status_code == 200 and rotated.json()["secret"] == endpoint.secret
    assert "secret" not in bob.patch(f"/webhooks/{endpoint.pk}", {"active": True}).json()
