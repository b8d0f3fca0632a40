"""The webhooks pages: a team's skill owners manage its endpoints (the signing secret shown once) and read
each endpoint's delivery log, redelivering from it; other teams' endpoints are 404."""

import pytest
from django.urls import reverse

from config import dispatch
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import webhook_endpoint_create


@pytest.fixture
def legal_endpoint(people):
    return webhook_endpoint_create(team=people["legal"], url="https://hooks.legal.example/accrete", actor=people["bob"],
                                   events=["gate.blocked", "job.failed"], description="Legal's chat channel")


@pytest.fixture
def failed_delivery(legal_endpoint):
    return WebhookDelivery.objects.create(
        endpoint=legal_endpoint, event_id="evt_4242", event_type="gate.blocked", status="failed", attempts=3,
        response_status=502, latency_ms=137, last_error="HTTP 502: bad gateway",
        payload={"type": "gate.blocked", "data": {"id": 7}},
        log=[{"at": "2025-01-01T10:00:00+00:00", "status": 502, "latency_ms": 137, "error": "HTTP 502: bad gateway"}])


@pytest.fixture
def sent(monkeypatch):
    """Tasks queued by name (the broker as the web process sees it)."""
    calls = []
    monkeypatch.setattr(dispatch, "send", lambda name, *args: calls.append((name, args)))
    return calls


def create_form(team, **overrides):
    return {"team": team.pk, "url": "https://ci.example/hooks/accrete", "events": ["job.succeeded", "gate.passed"],
            "description": "CI trigger", **overrides}


def test_creating_an_endpoint_shows_its_signing_secret_once(login, people):
    bob = login("bob")

    response = bob.post(reverse("webhook_new"), create_form(people["legal"]))

    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 200
    page = response.content.decode()
    assert endpoint.secret.startswith("whsec_") and endpoint.secret in page
    assert "it will not be shown again" in page
    assert "webhook-id" in page and "webhook-timestamp" in page and "webhook-signature" in page
    assert endpoint.team == people["legal"] and endpoint.events == ["job.succeeded", "gate.passed"]
    assert endpoint.secret not in bob.get(reverse("webhook_detail", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in bob.get(reverse("webhooks")).content.decode()


def test_the_list_shows_each_endpoint_with_its_events_or_all(login, people, legal_endpoint):
    webhook_endpoint_create(team=people["legal"], url="https://all.example/hook", actor=people["bob"])

    page = login("bob").get(reverse("webhooks")).content.decode()

    assert "https://hooks.legal.example/accrete" in page and "gate.blocked" in page
    assert "https://all.example/hook" in page and '<span class="muted">all</span>' in page


def test_the_form_offers_every_event_as_a_checkbox(login, people):
    from webhooks.models import EVENTS

    page = login("bob").get(reverse("webhooks")).content.decode()

    for event in EVENTS:
        assert f'type="checkbox" name="events" value="{event}"' in page


def test_an_address_that_is_not_http_is_refused_with_the_fix(login, people):
    response = login("bob").post(reverse("webhook_new"), create_form(people["legal"], url="ftp://files.example/x"))

    assert response.status_code == 400
    assert "must be an http:// or https:// address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_someone_without_the_skill_owner_role_sees_an_explanation(login, people, legal_endpoint):
    page = login("alice").get(reverse("webhooks")).content.decode()

    assert "Webhooks are managed by skill owners" in page
    assert 'name="url"' not in page and legal_endpoint.url not in page


def test_a_contributor_cannot_create_an_endpoint(login, people):
    response = login("alice").post(reverse("webhook_new"), create_form(people["legal"]))

    assert response.status_code == 403
    assert not WebhookEndpoint.objects.exists()


def test_carol_cannot_create_an_endpoint_for_legal(login, people):
    response = login("carol").post(reverse("webhook_new"), create_form(people["legal"]))

    assert response.status_code == 404
    assert not WebhookEndpoint.objects.exists()


def test_carol_cannot_see_legals_endpoints_or_deliveries(login, people, failed_delivery, sent):
    carol = login("carol")
    endpoint = failed_delivery.endpoint

    assert endpoint.url not in carol.get(reverse("webhooks")).content.decode()
    assert carol.get(reverse("webhook_detail", args=[endpoint.pk])).status_code == 404
    assert carol.post(reverse("webhook_redeliver", args=[failed_delivery.pk])).status_code == 404
    assert carol.post(reverse("webhook_toggle", args=[endpoint.pk])).status_code == 404
    assert carol.post(reverse("webhook_delete", args=[endpoint.pk])).status_code == 404
    assert WebhookDelivery.objects.count() == 1 and WebhookEndpoint.objects.get().active


def test_a_legal_contributor_is_refused_legals_endpoint_page(login, people, legal_endpoint):
    response = login("alice").get(reverse("webhook_detail", args=[legal_endpoint.pk]))

    assert response.status_code == 403
    assert "Skill owner role" in response.content.decode()


def test_the_delivery_log_shows_each_attempts_outcome(login, people, failed_delivery):
    page = login("bob").get(reverse("webhook_detail", args=[failed_delivery.endpoint.pk])).content.decode()

    for shown in ("gate.blocked", "evt_4242", "failed", "502", "137 ms", "HTTP 502: bad gateway", "Redeliver"):
        assert shown in page, shown


def test_an_endpoint_without_deliveries_says_when_they_come(login, people, legal_endpoint):
    page = login("bob").get(reverse("webhook_detail", args=[legal_endpoint.pk])).content.decode()

    assert "No deliveries yet" in page


def test_redeliver_adds_a_delivery_to_the_log_and_queues_it(login, people, failed_delivery, sent,
                                                           django_capture_on_commit_callbacks):
    bob = login("bob")

    with django_capture_on_commit_callbacks(execute=True):
        response = bob.post(reverse("webhook_redeliver", args=[failed_delivery.pk]))

    again = WebhookDelivery.objects.exclude(pk=failed_delivery.pk).get()
    assert response.status_code == 302
    assert response.url == reverse("webhook_detail", args=[failed_delivery.endpoint.pk])
    assert again.event_id == "evt_4242" and again.redelivery_of == failed_delivery and again.status == "pending"
    assert sent == [(dispatch.DELIVER_WEBHOOK, (again.pk,))]
    page = bob.get(response.url).content.decode()
    assert page.count('data-testid="delivery-row"') == 2
    assert f"redelivery of #{failed_delivery.pk}" in page


def test_a_legal_contributor_cannot_redeliver(login, people, failed_delivery, sent):
    response = login("alice").post(reverse("webhook_redeliver", args=[failed_delivery.pk]))

    assert response.status_code == 403
    assert WebhookDelivery.objects.count() == 1 and sent == []


def test_an_endpoint_is_disabled_and_enabled_again(login, people, legal_endpoint):
    bob = login("bob")

    bob.post(reverse("webhook_toggle", args=[legal_endpoint.pk]))
    legal_endpoint.refresh_from_db()
    assert not legal_endpoint.active

    bob.post(reverse("webhook_toggle", args=[legal_endpoint.pk]), {"active": "on"})
    legal_endpoint.refresh_from_db()
    assert legal_endpoint.active


def test_rotating_the_secret_shows_the_new_one_once(login, people, legal_endpoint):
    old = legal_endpoint.secret
    bob = login("bob")

    response = bob.post(reverse("webhook_rotate", args=[legal_endpoint.pk]))

    legal_endpoint.refresh_from_db()
    assert legal_endpoint.secret != old
    page = response.content.decode()
    assert legal_endpoint.secret in page and old not in page
    assert legal_endpoint.secret not in bob.get(reverse("webhook_detail", args=[legal_endpoint.pk])).content.decode()


def test_deleting_an_endpoint_removes_it(login, people, legal_endpoint):
    response = login("dave").post(reverse("webhook_delete", args=[legal_endpoint.pk]))

    assert response.status_code == 302 and response.url == reverse("webhooks")
    assert not WebhookEndpoint.objects.exists()
