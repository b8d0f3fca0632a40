# Load the Celery app with Django, so that shared tasks enqueued from the web process, the CLI or the
# demo use its broker (and not Celery's default amqp://localhost).
from config.celery_app import app as celery_app

__all__ = ["celery_app"]
