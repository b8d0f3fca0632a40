"""The Celery app. Workers start with `celery -A config.celery_app worker -Q train` (one per GPU),
`-Q eval,default` for evaluation, `-Q webhooks` for webhook deliveries (so a slow receiver never waits behind
a gate or holds one up). Queues and limits are decided here, not at the call sites."""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

QUEUES = ("train", "eval", "default", "webhooks")

app = Celery("accrete")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # Each queue with its own direct exchange and routing key: a bare Queue(name) binds every queue to
    # the default exchange under the key "default", and a task routed to "eval" then reaches no queue.
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
    task_default_queue="default",
    task_default_exchange="default",
    task_default_routing_key="default",
    # By task name (config.dispatch): services send by name and never import the workers package.
    task_routes={
        "workers.tasks.train_job": {"queue": "train"},
        "workers.tasks.gate_candidate": {"queue": "eval"},
        "workers.tasks.score_gate_parent": {"queue": "eval"},
        "workers.tasks.playground_generate": {"queue": "eval"},
        "workers.tasks.readiness_check": {"queue": "eval"},
        "workers.tasks.export_production": {"queue": "eval"},
        "workers.tasks.deliver_webhook": {"queue": "webhooks"},
    },
    # A training task holds a GPU for hours: take one at a time, acknowledge it only when done, and
    # give it back to the queue if the worker process dies under it.
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_track_started=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    beat_schedule={
        "reap-stale-jobs": {"task": "workers.tasks.reap_stale_jobs", "schedule": 60.0},
        "expire-pending-uploads": {"task": "workers.tasks.expire_pending_uploads", "schedule": 3600.0},
        "sweep-webhooks": {"task": "workers.tasks.sweep_webhooks", "schedule": 60.0},
        "apply-retention": {"task": "workers.tasks.apply_retention", "schedule": 24 * 3600.0},
    },
)
app.autodiscover_tasks(["workers"])
