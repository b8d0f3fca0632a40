"""The project's front door: layout, migrations, deploy checks, lint, the compose file."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def run(*args, env=None, cwd=REPO, timeout=120):
    # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process; a deployment never has it.
    base = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run(args, cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def test_platform_is_a_plain_folder_so_the_standard_library_platform_still_imports():
    assert not (REPO / "platform" / "__init__.py").exists()
    out = run(PY, "manage.py", "shell", "-v", "0", "-c", "import platform, uuid; print(platform.system(), uuid.uuid4().version)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Linux", "4"]


def test_ruff_is_clean_and_refuses_a_module_that_shadows_the_standard_library(tmp_path):
    ruff = Path(PY).parent / "ruff"
    clean = run(str(ruff), "check", ".")
    assert clean.returncode == 0, clean.stdout[-2000:]
    (tmp_path / "platform").mkdir()
    (tmp_path / "platform" / "__init__.py").write_text("")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shadow = run(str(ruff), "check", ".", cwd=tmp_path)
    assert shadow.returncode == 1 and "A005" in shadow.stdout


def test_models_and_migrations_agree():
    out = run(PY, "manage.py", "makemigrations", "--check", "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_deploy_check_passes_with_production_settings():
    env = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "k" * 64 + "-production-secret-Q9x!", "DJANGO_SECURE_COOKIES": "1",
           "DJANGO_SECURE_SSL_REDIRECT": "1", "DJANGO_SECURE_HSTS_SECONDS": "31536000",
           "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "DJANGO_SECURE_HSTS_PRELOAD": "1",
           "DJANGO_ALLOWED_HOSTS": "accrete.example.com"}
    out = run(PY, "manage.py", "check", "--deploy", "--fail-level", "WARNING", env=env)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_bad_setting_fails_loudly_at_start():
    out = run(PY, "manage.py", "check", env={"ACCRETE_HEARTBEAT_TIMEOUT_S": "soon"})
    assert out.returncode != 0 and "ACCRETE_HEARTBEAT_TIMEOUT_S='soon' is not an integer" in out.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian's v1 client) not installed")
def test_the_compose_file_parses():
    out = run("docker-compose", "config", "-q", env={"DJANGO_SECRET_KEY": "x", "ACCRETE_INFERENCE_KEY": "y"})
    assert out.returncode == 0, out.stderr


def test_the_dockerfile_installs_what_the_makefile_installs():
    makefile, dockerfile = (REPO / "Makefile").read_text(), (REPO / "Dockerfile").read_text()
    for step in ("torch==2.13.0", "-e '.[dev]'"):
        assert step in makefile and step in dockerfile, step
