"""Webhook endpoints (managed by a team's skill owners) and delivering events to them, signed per the
Standard Webhooks specification (the `standardwebhooks` package): headers webhook-id, webhook-timestamp
and webhook-signature (v1, HMAC-SHA256 over `id.timestamp.body`).

Which events a team receives: its own jobs, gates and promotion requests, and `version.production`
(production is everyone's model). Payloads carry ids, names, scores and reasons — never a case's prompt,
reference or output, so a team never receives another team's case contents."""

import base64
import ipaddress
import json
import secrets
import socket
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from audit.models import AuditEvent
from audit.services import audit_record
from config import dispatch
from config.errors import AccreteError
from teams.models import Role
from teams.permissions import require_role
from webhooks.models import EVENTS, WebhookDelivery, WebhookEndpoint

# audit action → (event type, the audit data keys the payload carries)
_FROM_AUDIT = {
    "job.succeeded": ("job.succeeded", ("version", "skill")),
    "job.failed": ("job.failed", ("error", "skill")),
    "job.cancelled": ("job.cancelled", ("skill",)),
    "gate.pass": ("gate.passed", ("candidate", "baseline", "reasons")),
    "gate.block": ("gate.blocked", ("candidate", "baseline", "reasons")),
    "promotion.requested": ("promotion.requested", ("version",)),
    "promotion.approved": ("promotion.approved", ("version", "comment")),
    "promotion.rejected": ("promotion.rejected", ("version", "comment")),
    "version.production": ("version.production", ("version", "replaces", "rollback", "request")),
}
BROADCAST = {"version.production"}  # sent to every team's endpoints
_OBJECTS = {"TrainingJob": "job", "GateResult": "gate", "PromotionRequest": "promotion_request",
            "ModelVersion": "version"}
USER_AGENT = "Accrete-Webhooks/1"
# A retry may fire a moment before its next_attempt_at when another host's clock runs a little ahead.
DUE_GRACE = timedelta(seconds=1)


class WebhookRefused(AccreteError):
    """An endpoint that cannot be saved (a URL that is not http(s), an unknown event type)."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _clean(url: str, events) -> tuple[str, list[str]]:
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. "http://[::1": an unclosed IPv6 bracket
        parts, hostname = None, None
    if parts is None or parts.scheme not in ("http", "https") or not hostname or len(url) > 500:
        raise WebhookRefused(f"The endpoint URL must be an http:// or https:// address of at most 500 characters "
                             f"(got {url[:80]!r}).")
    events = list(dict.fromkeys(events or []))
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise WebhookRefused(f"Unknown event type(s) {', '.join(map(repr, unknown))}: use {', '.join(EVENTS)}, or "
                             "none for every event.")
    return url, events


def webhook_endpoint_create(*, team, url: str, actor, events=None, description: str = "") -> WebhookEndpoint:
    require_role(actor, team, Role.SKILL_OWNER, action="manage webhooks")
    url, events = _clean(url, events)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(team=team, url=url, events=events, description=description[:200],
                                                  secret=new_secret(), created_by=actor)
        audit_record(actor=actor, action="webhook.created", obj=endpoint, team=team,
                     data={"url": url, "events": events})
    return endpoint


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, actor, active: bool | None = None, url: str | None = None,
                            events=None, rotate_secret: bool = False) -> WebhookEndpoint:
    require_role(actor, endpoint.team, Role.SKILL_OWNER, action="manage webhooks")
    changed = {}
    if url is not None or events is not None:
        new_url, new_events = _clean(url if url is not None else endpoint.url,
                                     events if events is not None else endpoint.events)
        if new_url != endpoint.url:
            changed["url"], endpoint.url = new_url, new_url
        if new_events != endpoint.events:
            changed["events"], endpoint.events = new_events, new_events
    if active is not None and active != endpoint.active:
        changed["active"], endpoint.active = active, active
    if rotate_secret:
        endpoint.secret, changed["secret"] = new_secret(), "rotated"
    if changed:
        with transaction.atomic():
            endpoint.save()
            audit_record(actor=actor, action="webhook.updated", obj=endpoint, team=endpoint.team, data=changed)
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor) -> None:
    require_role(actor, endpoint.team, Role.SKILL_OWNER, action="manage webhooks")
    with transaction.atomic():
        audit_record(actor=actor, action="webhook.deleted", obj=endpoint, team=endpoint.team,
                     data={"url": endpoint.url})
        endpoint.delete()


def event_payload(event: AuditEvent) -> tuple[str, dict] | None:
    """(event type, payload) announcing an audit event, or None when it is not a webhook event."""
    known = _FROM_AUDIT.get(event.action)
    if known is None:
        return None
    event_type, keys = known
    data = {"object": _OBJECTS.get(event.object_type, event.object_type.lower()), "id": int(event.object_id)
            if event.object_id.isdigit() else event.object_id, "team": event.team.slug if event.team_id else None,
            "actor": event.actor_label}
    data.update({key: event.data[key] for key in keys if key in event.data})
    return event_type, {"type": event_type, "timestamp": event.created_at.isoformat(), "data": data}


def webhook_deliveries_for(event: AuditEvent) -> list[WebhookDelivery]:
    """Queue a delivery of `event` to every endpoint that wants it (inside the caller's transaction: an
    outbox), and send them once it commits."""
    announced = event_payload(event)
    if announced is None:
        return []
    event_type, payload = announced
    endpoints = WebhookEndpoint.objects.filter(active=True)
    if event_type not in BROADCAST:
        if event.team_id is None:
            return []
        endpoints = endpoints.filter(team_id=event.team_id)
    now = timezone.now()
    deliveries = [WebhookDelivery.objects.create(endpoint=endpoint, event_id=f"evt_{event.pk}", event_type=event_type,
                                                 payload=payload, next_attempt_at=now)
                  for endpoint in endpoints if endpoint.wants(event_type)]
    for delivery in deliveries:
        # robust: a broker that is down must not fail the change that already committed (the sweep resends)
        transaction.on_commit(lambda pk=delivery.pk: dispatch.send(dispatch.DELIVER_WEBHOOK, pk), robust=True)
    return deliveries


def _backoff(attempts: int) -> float:
    return min(settings.ACCRETE_WEBHOOK_RETRY_BASE_S * 2 ** max(attempts - 1, 0), 3600.0)


def webhook_deliver(delivery_id: int, *, client: httpx.Client | None = None) -> float | None:
    """One attempt at a pending delivery: claim it (a short transaction), send it (no transaction, no lock
    held while the receiver answers), record the outcome. Returns the seconds to wait before the next
    attempt, or None when there is none (delivered, given up after ACCRETE_WEBHOOK_MAX_ATTEMPTS, not due,
    or not pending any more). The attempt is counted when it is claimed, so a worker killed mid-request
    still uses one of the attempts and the sweep sends it again later."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    status, error, latency, sent_at = _send(delivery, client)
    return _record(delivery, status=status, error=error, latency=latency, sent_at=sent_at)


def _lease() -> timedelta:
    """How long a claimed attempt may take before a duplicate message or the sweep may try again."""
    return timedelta(seconds=settings.ACCRETE_WEBHOOK_TIMEOUT_S * 3 + 60)


def _claim(delivery_id: int) -> WebhookDelivery | None:
    with transaction.atomic():
        delivery = (WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("endpoint").filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING).first())
        if delivery is None:
            return None  # done, or another worker holds it
        now = timezone.now()
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now + DUE_GRACE:
            # A second message for an attempt already made or in flight (Celery delivers at least once; the
            # sweep re-queues late ones): the attempt that set next_attempt_at queued its own retry.
            return None
        if not delivery.endpoint.active:
            # A team turns an endpoint off to stop the requests (a broken receiver, a leaked URL): retries too.
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
            delivery.last_error = "The endpoint is turned off: nothing was sent (redeliver once it is back on)."
            delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
            return None
        if delivery.attempts >= settings.ACCRETE_WEBHOOK_MAX_ATTEMPTS:  # its last attempt died with a worker
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
            delivery.last_error = (delivery.last_error or "The last attempt did not finish (the worker stopped).")
            delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + _lease()
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    return delivery


def _send(delivery: WebhookDelivery, client: httpx.Client | None) -> tuple[int | None, str, int, datetime]:
    """POST the signed payload. Only the status code of the answer is kept (its body is never read past a
    few bytes, nor stored: a receiver's page is not the platform's to show)."""
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)
    sent_at = timezone.now()
    signature = Webhook(delivery.endpoint.secret).sign(delivery.event_id, sent_at, body)
    headers = {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": delivery.event_id,
               "webhook-timestamp": str(int(sent_at.timestamp())), "webhook-signature": signature}
    started = time.monotonic()
    status, error = None, ""
    refusal = private_address_refusal(delivery.endpoint.url)
    if refusal:
        return None, refusal, 0, sent_at
    own = client or httpx.Client(timeout=settings.ACCRETE_WEBHOOK_TIMEOUT_S, follow_redirects=False)
    try:
        with own.stream("POST", delivery.endpoint.url, content=body.encode(), headers=headers) as response:
            status = response.status_code
            for _ in response.iter_bytes(1024):
                break  # the answer's body is not needed: read at most one chunk, then close
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        if client is None:
            own.close()
    return status, error, int((time.monotonic() - started) * 1000), sent_at


def _record(delivery: WebhookDelivery, *, status, error: str, latency: int, sent_at: datetime) -> float | None:
    wait = None
    fields = {"response_status": status, "latency_ms": latency, "last_error": error,
              "log": [*delivery.log, {"at": sent_at.isoformat(), "status": status, "latency_ms": latency,
                                      "error": error}][-20:]}
    if not error:
        fields.update(status=WebhookDelivery.Status.SUCCEEDED, delivered_at=timezone.now(), next_attempt_at=None)
    elif delivery.attempts >= settings.ACCRETE_WEBHOOK_MAX_ATTEMPTS:
        fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    else:
        wait = _backoff(delivery.attempts)
        fields["next_attempt_at"] = timezone.now() + timedelta(seconds=wait)
    recorded = WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING,
                                              attempts=delivery.attempts).update(**fields)
    return wait if recorded else None


def private_address_refusal(url: str) -> str:
    """Why `url` must not be called — its host is (or resolves to) a loopback, private, link-local or reserved
    address, the platform's own network — or "" when it may. ACCRETE_WEBHOOK_ALLOW_PRIVATE=1 allows them
    (the embedded default, where receivers run on the same machine)."""
    if settings.ACCRETE_WEBHOOK_ALLOW_PRIVATE:
        return ""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        return f"Cannot resolve {host}: {exc}"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast \
                or ip.is_unspecified:
            return (f"Refused: {host} resolves to {address}, an internal address (set "
                    "ACCRETE_WEBHOOK_ALLOW_PRIVATE=1 to allow receivers inside the platform's network).")
    return ""


def webhook_redeliver(*, delivery: WebhookDelivery, actor) -> WebhookDelivery:
    """Send a delivery again (the same event id: receivers deduplicate by it), as a new entry of the log."""
    require_role(actor, delivery.endpoint.team, Role.SKILL_OWNER, action="redeliver webhooks")
    with transaction.atomic():
        again = WebhookDelivery.objects.create(endpoint=delivery.endpoint, event_id=delivery.event_id,
                                               event_type=delivery.event_type, payload=delivery.payload,
                                               redelivery_of=delivery, next_attempt_at=timezone.now())
        audit_record(actor=actor, action="webhook.redelivered", obj=again, team=delivery.endpoint.team,
                     data={"event_id": delivery.event_id, "of": delivery.pk})
        transaction.on_commit(lambda: dispatch.send(dispatch.DELIVER_WEBHOOK, again.pk), robust=True)
    return again


def webhook_deliveries_overdue(*, now=None) -> list[int]:
    """Pending deliveries whose next attempt is more than five minutes late (their task was lost with a
    worker): the beat sweep queues them again."""
    cutoff = (now or timezone.now()) - timedelta(minutes=5)
    return list(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lt=cutoff)
                .values_list("pk", flat=True)[:500])
