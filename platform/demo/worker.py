"""The demo's own Celery worker: a real worker process on the real queue (the filesystem broker by
default), started for the scenario and stopped after it, so `make demo` needs nothing else running."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from demo.progress import Terminal
from demo.settings import DEMO


@contextmanager
def local_worker(term: Terminal) -> Iterator[subprocess.Popen]:
    """A worker on the demo's queues for the duration of the block; its log goes to var/demo-worker.log."""
    worker = worker_start(term)
    try:
        yield worker
    finally:
        worker_stop(worker)


def worker_start(term: Terminal) -> subprocess.Popen:
    log = worker_log()
    term.say(f"Starting a Celery worker (queues {DEMO.worker_queues.replace(',', ', ')}; log {log}) …")
    cmd = [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker", "-Q", DEMO.worker_queues,
           "--concurrency", "1", "-l", "INFO", "-n", f"demo-{os.getpid()}@%h"]
    return subprocess.Popen(cmd, stdout=log.open("a"), stderr=subprocess.STDOUT, cwd=settings.BASE_DIR,
                            env={**os.environ, "PYTHONPATH": str(Path(settings.BASE_DIR) / "platform")})


def worker_stop(worker: subprocess.Popen) -> None:
    """SIGTERM lets the worker finish its current task (a warm shutdown); kill it if it does not in time."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=DEMO.worker_stop_seconds)
    except subprocess.TimeoutExpired:
        worker.kill()


def worker_log() -> Path:
    return Path(settings.VAR_DIR) / "demo-worker.log"
