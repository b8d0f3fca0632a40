"""The layers hold (import-linter, contracts in pyproject.toml), and the contracts catch the two cycles
the split removed: skills ↔ registry, and a service enqueuing through workers.tasks (which imports the
pipeline, which imports the services back)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
TREES = ["platform", "skills", "workers", "frontend"]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'platform'}"}
    return subprocess.run([str(LINT)], cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    for name in TREES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layers_hold():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("skills/services.py", "from registry.models import ModelVersion", "Skills never import the registry"),
    ("platform/training/services.py", "from workers.tasks import train_job", "No service imports the workers package"),
])
def test_reintroducing_a_cycle_breaks_the_contracts(tree_copy, module, line, contract):
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")

    done = lint_imports(tree_copy)

    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), done.stdout
    assert any(line.startswith("Apps in their declared order") for line in broken)  # the layers say it too


def test_each_app_has_one_initial_migration():
    """No database was deployed before the split, so each app starts from one migration."""
    folders = sorted(p for p in ROOT.glob("**/migrations") if ".venv" not in p.parts)
    assert {p.parent.name for p in folders} == {"teams", "audit", "skills", "evaluation", "registry", "training",
                                                "tokens", "webhooks", "api"}
    for folder in folders:
        assert sorted(p.name for p in folder.glob("0*.py")) == ["0001_initial.py"], folder
