"""Enqueue worker tasks by name. Services call `send` with one of these names, so nothing above the engine
imports the workers package (its tasks load torch): the Celery app routes each name to its queue."""

from config.celery_app import app

TRAIN_JOB = "workers.tasks.train_job"
GATE_CANDIDATE = "workers.tasks.gate_candidate"
READINESS_CHECK = "workers.tasks.readiness_check"
PLAYGROUND_GENERATE = "workers.tasks.playground_generate"
DELIVER_WEBHOOK = "workers.tasks.deliver_webhook"
EXPORT_PRODUCTION = "workers.tasks.export_production"


def send(name: str, *args):
    """Queue task `name` with positional `args`; returns its AsyncResult."""
    return app.send_task(name, args=list(args))
