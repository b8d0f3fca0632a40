"""The web process imports the pure modules; they must not drag torch (seconds, gigabytes) in."""

import subprocess
import sys


def test_the_pure_engine_modules_do_not_import_torch_or_django():
    code = (
        "import sys; import workers.engine, workers.engine.contract.prompts, workers.engine.data, workers.engine.contract.config,"
        " workers.engine.contract.anchors, workers.engine.contract.intervals;"
        "bad = [m for m in ('torch', 'transformers', 'django') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
