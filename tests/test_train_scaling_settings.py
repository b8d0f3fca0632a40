"""The train worker's scaling settings (ACCRETE_TRAIN_*): one process by default, a typo stops the process at
start with the setting's name."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

from workers.engine.contract.scaling import Scaling


def test_a_worker_trains_in_its_own_process_by_default():
    assert settings.ACCRETE_TRAIN_SCALING == Scaling() and not settings.ACCRETE_TRAIN_SCALING.launches


@pytest.mark.parametrize(("env", "message"), [
    ({"ACCRETE_TRAIN_PROCESSES": "0"}, "ACCRETE_TRAIN_PROCESSES=0 is invalid: a whole number of training processes"),
    ({"ACCRETE_TRAIN_DISTRIBUTED": "zero3"},
     "ACCRETE_TRAIN_DISTRIBUTED='zero3' is invalid: one of ddp, deepspeed-zero2, deepspeed-zero3"),
    ({"ACCRETE_TRAIN_VLLM": "on"}, "ACCRETE_TRAIN_VLLM='on' is invalid: one of off, colocate"),
    ({"ACCRETE_TRAIN_VLLM_GPU_MEMORY": "90"}, "ACCRETE_TRAIN_VLLM_GPU_MEMORY=90.0 is invalid"),
])
def test_a_bad_scaling_setting_stops_the_process_at_start(env, message):
    done = subprocess.run([sys.executable, "manage.py", "check"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]


def test_a_good_scaling_setting_is_read():
    done = subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c",
                           "from django.conf import settings; print(settings.ACCRETE_TRAIN_SCALING)"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ACCRETE_TRAIN_PROCESSES": "4", "ACCRETE_TRAIN_DISTRIBUTED": "deepspeed-zero3",
                               "ACCRETE_TRAIN_VLLM": "colocate", "ACCRETE_TRAIN_VLLM_GPU_MEMORY": "0.4"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("Scaling(processes=4, strategy='deepspeed-zero3', vllm='colocate', vllm_gpu_memory_utilization=0.4, "
            "vllm_sleep=False)") in done.stdout
