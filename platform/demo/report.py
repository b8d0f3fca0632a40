"""The demo's HTML report (var/reports/demo-report.html): the outcome, the readiness check, the forgetting
matrix, each gate and the training curves, in one self-contained file (the app's stylesheet inline, the
charts inline SVG; nothing fetched when it is opened).

The matrix and the gates are the registry partials the pages include, fed by the same selectors; the
curves are the job page's charts. Django's autoescaping covers every name a team typed."""

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from frontend.charts import line_chart
from registry.models import GateResult
from registry.selectors import gate_report
from training.models import TrainingJob
from training.selectors import job_page

STYLESHEET = "frontend/accrete.css"


def write_report(*, matrix: dict, out_dir: Path, outcome: Sequence[str] = (),
                 readiness: Sequence[tuple[str, dict | None]] = ()) -> Path:
    """Render the report and replace `out_dir`/demo-report.html with it in one step; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page = render_to_string("demo/report.html", {
        "stamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "stylesheet": _stylesheet(),
        "outcome": list(outcome),
        "readiness": [(slug, report) for slug, report in readiness if report],
        "matrix": matrix,
        "gates": [gate_report(gate) for gate in
                  GateResult.objects.select_related("candidate", "baseline").order_by("candidate__number")],
        "curves": [_curves(job) for job in
                   TrainingJob.objects.filter(status=TrainingJob.Status.SUCCEEDED).select_related("skill")
                   .order_by("pk")],
    })
    path = out_dir / "demo-report.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def _curves(job: TrainingJob) -> dict:
    page = job_page(job)
    return {"job": job, "loss": line_chart(page["loss"], title="Loss"),
            # SFT has no teacher, so no KL to draw.
            "kl": line_chart(page["kl"], title="KL (teacher ‖ student)", color="#9333ea")
            if job.method == TrainingJob.Method.SDFT else None}


def _stylesheet() -> str:
    # Our own file, inlined so the report opens offline; escaping it would break its quoted font names.
    path = finders.find(STYLESHEET)
    return mark_safe(Path(path).read_text(encoding="utf-8")) if path else ""
