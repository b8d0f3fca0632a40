"""Celery tasks: thin. Each takes ids, calls one function of workers.pipeline, and is safe to deliver
twice (the services' compare-and-set claims make the second delivery a no-op)."""

import socket

from celery import shared_task
from celery.signals import worker_process_init
from celery.utils.log import get_task_logger
from django.conf import settings

from registry.errors import GateNotReady
from registry.models import ModelVersion
from registry.services import gates
from skills.uploads import pending_uploads_expire
from training import services as jobs
from webhooks.services import webhook_deliver, webhook_deliveries_overdue
from workers import pipeline

log = get_task_logger(__name__)


@worker_process_init.connect
def _one_thread_pool_per_process(**_):
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _worker_name(task) -> str:
    return getattr(task.request, "hostname", None) or socket.gethostname()


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True,
             time_limit=settings.CELERY_TRAIN_TIME_LIMIT_S, soft_time_limit=settings.CELERY_TRAIN_TIME_LIMIT_S - 60)
def train_job(self, job_id: int):
    version_id = pipeline.run_training(job_id, _worker_name(self))
    if version_id is None:
        # A redelivery after the worker died between creating the candidate and enqueueing its gate.
        version_id = ModelVersion.objects.filter(training_job__pk=job_id, status=ModelVersion.Status.CANDIDATE
                                                 ).values_list("pk", flat=True).first()
    if version_id is not None:
        gate_candidate.delay(version_id)
    return version_id


GATE_RETRY_S = 30
# A gate waits (retrying) while another worker scores a suite it needs; that worker's eval run counts as dead
# only after CELERY_EVAL_TIME_LIMIT_S, so the gate keeps waiting at least that long (plus the grace).
GATE_MAX_RETRIES = (settings.CELERY_EVAL_TIME_LIMIT_S + settings.ACCRETE_GATE_GRACE_S) // GATE_RETRY_S + 1


@shared_task(bind=True, acks_late=True, time_limit=settings.CELERY_EVAL_TIME_LIMIT_S, max_retries=GATE_MAX_RETRIES)
def gate_candidate(self, version_id: int):
    try:
        # The parent's missing scores go to the eval queue, so a second eval worker scores them while this one
        # scores the candidate; a suite still being scored elsewhere is waited for up to one retry's countdown.
        return pipeline.run_candidate_gate(version_id, score_parent_elsewhere=score_gate_parent.delay,
                                           wait_s=GATE_RETRY_S)
    except GateNotReady as exc:
        if self.request.retries >= self.max_retries:
            # Out of retries: fail the gate with the reason (a skill owner can re-run it), not evaluating forever.
            pipeline.gate_give_up(version_id, f"Gave up after {self.max_retries} retries: {exc}")
            return None
        raise self.retry(exc=exc, countdown=GATE_RETRY_S) from exc


@shared_task(acks_late=True, time_limit=settings.CELERY_EVAL_TIME_LIMIT_S)
def score_gate_parent(version_id: int):
    """The parent's half of a candidate's gate, queued by gate_candidate when the parent lacks scores: another
    eval worker scores them meanwhile; with one eval worker this runs after the gate and finds them done (the
    claims make it a no-op, and it loads nothing). A failure leaves failed runs the gate task scores itself."""
    return pipeline.run_gate_parent_scores(version_id)


@shared_task(time_limit=settings.CELERY_EVAL_TIME_LIMIT_S)
def readiness_check(demonstration_set_id: int):
    return pipeline.run_readiness(demonstration_set_id)


@shared_task(ignore_result=False, time_limit=300)
def playground_generate(version_id: int, messages: list[dict], max_new_tokens: int = 128) -> dict:
    """One playground prompt, its result kept for the page that polls it: {text, seconds, tokens, source}.
    Through the inference service when ACCRETE_INFERENCE_URL names one (it keeps versions warm), else here,
    by loading the version (pipeline.run_playground). An error raises with a message the page shows."""
    import time

    import httpx

    started = time.monotonic()
    if not settings.ACCRETE_INFERENCE_URL:
        text = pipeline.run_playground(version_id, messages, max_new_tokens)
        return {"text": text, "seconds": round(time.monotonic() - started, 2), "tokens": None,
                "source": "eval worker"}
    number = ModelVersion.objects.values_list("number", flat=True).get(pk=version_id)
    service = settings.ACCRETE_INFERENCE_URL.rstrip("/")
    try:
        # below the task's time limit, so that a slow service ends in this message rather than a killed task
        response = httpx.post(f"{service}/v1/chat/completions", timeout=240,
                              headers={"Authorization": f"Bearer {settings.ACCRETE_INFERENCE_KEY}"},
                              json={"model": f"v{number}", "messages": messages, "max_tokens": max_new_tokens})
    except httpx.HTTPError as exc:
        raise RuntimeError(f"The inference service at {service} did not answer ({exc or type(exc).__name__}): is "
                           "it running (make serve-model), and is ACCRETE_INFERENCE_URL right?") from None
    if response.is_error:
        try:
            detail = response.json()["error"]["message"]  # the OpenAI error format
        except (ValueError, KeyError, TypeError):
            detail = " ".join(response.text.split())[:300]
        raise RuntimeError(f"The inference service answered {response.status_code} for v{number}: {detail}")
    body = response.json()
    return {"text": body["choices"][0]["message"]["content"] or "", "seconds": round(time.monotonic() - started, 2),
            "tokens": (body.get("usage") or {}).get("completion_tokens"), "source": "inference service"}


@shared_task
def expire_pending_uploads():
    """Beat, hourly: delete validated uploads nobody saved within ACCRETE_UPLOAD_TTL_S."""
    return pending_uploads_expire()


@shared_task
def reap_stale_jobs():
    """The reaper (beat, every minute): jobs whose worker died or whose message was lost, and gates stuck."""
    return {"jobs": jobs.job_reap_stale(), "gates": gates.gate_reap_stuck()}


@shared_task(bind=True, acks_late=True, max_retries=None, time_limit=120)
def deliver_webhook(self, delivery_id: int):
    """One attempt at a webhook delivery; on a failure, again after an exponential backoff (the delivery
    row counts the attempts and gives up after ACCRETE_WEBHOOK_MAX_ATTEMPTS)."""
    wait = webhook_deliver(delivery_id)
    if wait is not None:
        raise self.retry(countdown=wait)
    return delivery_id


@shared_task
def sweep_webhooks():
    """Beat, every minute: pending deliveries whose retry was lost with a worker are queued again."""
    overdue = webhook_deliveries_overdue()
    for delivery_id in overdue:
        deliver_webhook.delay(delivery_id)
    return overdue


@shared_task
def apply_retention():
    """Beat, daily: delete the merged weights of blocked, rejected, stale and failed candidates older than
    ACCRETE_RETENTION_DAYS (adapters kept; each deletion audited). Returns the version numbers."""
    from registry.services.retention import retention_apply

    return [item.version.number for item in retention_apply()]


RELOAD_RETRY_S = 10
RELOAD_MAX_RETRIES = 5  # 10 s, 20 s, 40 s, 80 s, 160 s: a reloader restarting with the container has time


@shared_task(bind=True, acks_late=True, max_retries=RELOAD_MAX_RETRIES, time_limit=settings.CELERY_EVAL_TIME_LIMIT_S)
def export_production(self, version_id: int):
    """Queued on commit when a version becomes production (ACCRETE_PRODUCTION_EXPORT_DIR set): export it for
    vLLM, switch the `production` link, tell ACCRETE_PRODUCTION_RELOAD_URL. A retry finds the export done and
    only tells the reload URL again; the last try records the reload URL's silence instead of raising."""
    try:
        return pipeline.export_production(version_id, last_try=self.request.retries >= self.max_retries)
    except pipeline.ReloadUnanswered as exc:
        raise self.retry(exc=exc, countdown=RELOAD_RETRY_S * 2 ** self.request.retries) from exc
