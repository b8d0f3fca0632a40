"""The web process never loads the training engine's heavy dependencies."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serving_every_url_imports_no_torch():
    code = (
        "import os, sys, django; sys.path[:0] = ['.', 'platform'];"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "from django.urls import get_resolver; get_resolver().url_patterns;"
        "import frontend.views_upload, frontend.views_jobs, frontend.views_versions, frontend.views_playground;"
        "import workers.tasks, workers.pipeline, workers.engine.contract.scoring, workers.engine.contract.config;"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
