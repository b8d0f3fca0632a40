"""Abandoned uploads are deleted by the beat scheduler: the schedule names the task, and the task deletes
what outlived ACCRETE_UPLOAD_TTL_S (and nothing younger)."""

import os
import time

from config.celery_app import app
from skills.uploads import pending_upload_store, pending_upload_token


def test_the_beat_schedule_runs_the_upload_expiry_hourly():
    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "workers.tasks.expire_pending_uploads")
    assert entry["schedule"] <= 3600


def test_the_task_deletes_an_abandoned_upload_and_keeps_a_fresh_one(settings, var_dir):
    from workers.tasks import expire_pending_uploads

    settings.ACCRETE_UPLOAD_TTL_S = 3600
    old = pending_upload_store([b'{"prompt": "p", "demonstration": "d"}\n'], token=pending_upload_token(),
                               suffix="upload")
    fresh = pending_upload_store([b"{}\n"], token=pending_upload_token(), suffix="upload")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    assert expire_pending_uploads.run() == 1
    assert not old.exists() and fresh.exists()
