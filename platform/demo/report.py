"""A self-contained HTML report of the lineage: the forgetting matrix, each gate, and training curves
(inline SVG; no network needed to open it)."""

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from registry.models import GateResult
from registry.services.remedies import remedy_of_gate
from training.models import MetricPoint, TrainingJob


def _colour(score: float | None) -> str:
    if score is None:
        return "#f3f4f6"
    # red (0) → amber → green (1)
    hue = int(120 * score)
    return f"hsl({hue}, 65%, 82%)"


def curve_svg(points: list[tuple[int, float]], *, label: str, width: int = 420, height: int = 140) -> str:
    pts = [(s, v) for s, v in points if v is not None]
    if len(pts) < 2:
        return f"<p class='muted'>{html.escape(label)}: not enough points.</p>"
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = (x1 - x0) or 1, (y1 - y0) or 1
    coords = " ".join(f"{30 + (x - x0) / span_x * (width - 40):.1f},{10 + (1 - (y - y0) / span_y) * (height - 30):.1f}"
                      for x, y in pts)
    return (f"<svg width='{width}' height='{height}' role='img' aria-label='{html.escape(label)}'>"
            f"<polyline fill='none' stroke='#2563eb' stroke-width='2' points='{coords}'/>"
            f"<text x='30' y='{height - 4}' font-size='11'>{html.escape(label)}: step {x0}–{x1}, "
            f"{y0:.4g}–{y1:.4g}</text></svg>")


def _gate_row_html(row: dict) -> str:
    interval = row.get("interval")
    ci = f"{interval[0]:+.0%} to {interval[1]:+.0%}" if interval else "—"
    ref = row.get("lineage")
    lineage = "—" if not ref else (
        f"{ref['delta']:+.0%} vs {'base' if ref['kind'] == 'base' else 'best'} v{ref['version']} "
        f"({ref['score']:.0%}); budget {ref['budget']:.0%}: {ref['verdict']}")
    return (f"<tr><td>{html.escape(row['name'])}</td><td>{row['before']:.0%}</td><td>{row['after']:.0%}</td>"
            f"<td>{row['delta']:+.0%}</td><td>{ci}</td><td>{row.get('n', row['total'])}</td>"
            f"<td>{row['tolerance']:.0%}</td><td>{lineage}</td><td>{row['verdict']}</td></tr>")


def write_report(*, matrix: dict, out_dir: Path, outcome: Sequence[str] = (),
                 readiness: Sequence[tuple[str, dict | None]] = ()) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    head = "".join(f"<th>{html.escape(c['name'])}</th>" for c in matrix["columns"])
    body = ""
    for row in matrix["rows"]:
        cells = ""
        for cell in row["cells"]:
            if cell["score"] is None:
                cells += "<td style='background:#f3f4f6'>—</td>"
                continue
            delta = cell["delta"]
            d = "" if delta is None else (f"<br><small style='color:{'#b91c1c' if delta < 0 else '#15803d'}'>"
                                         f"{delta:+.0%}</small>")
            ref = cell.get("lineage")
            budget = "" if not ref else (
                f"<br><small style='color:#6b7280'>{ref['delta']:+.0%} vs v{ref['version']} · "
                + ("<b style='color:#b91c1c'>over budget</b>" if ref["verdict"] == "block"
                   else f"{ref['left']:.0%} of {ref['budget']:.0%} left") + "</small>")
            cells += (f"<td style='background:{_colour(cell['score'])}'>{cell['score']:.0%} "
                      f"<small>({cell['passed']}/{cell['total']})</small>{d}{budget}</td>")
        method = f" [{row['method']}]" if row["method"] else ""
        body += (f"<tr><th>{html.escape(row['label'] + method)}</th>{cells}"
                 f"<td>{html.escape(row['status'])}</td><td>{html.escape(row['gate'] or '')}</td></tr>")
    gates = ""
    for gate in GateResult.objects.select_related("candidate", "baseline").order_by("candidate__number"):
        rows = "".join(_gate_row_html(r) for r in gate.rows)
        reasons = "".join(f"<li>{html.escape(x)}</li>" for x in gate.reasons) or "<li>no drop beyond tolerance</li>"
        reasons += "".join(f"<li>warning: {html.escape(r['name'])}: {html.escape(r['warning'])}</li>"
                           for r in gate.rows if r.get("warning"))
        remedy = remedy_of_gate(gate)
        if remedy is not None:
            reasons += (f"<li><b>suggested remedy:</b> {html.escape(remedy.action)} "
                        f"<span class='muted'>Why: {html.escape(remedy.reason)}</span></li>")
        flips = "".join(
            f"<tr><td>{html.escape(f['suite'])}</td><td>{html.escape(f['prompt'][:120])}</td>"
            f"<td>{html.escape(f['expected'][:60])}</td><td>{html.escape(f['old_output'][:80])}</td>"
            f"<td>{html.escape(f['new_output'][:80])}</td></tr>"
            for f in gate.flipped if f["direction"] == "pass→fail")
        gates += (f"<h3>v{gate.candidate.number} vs v{gate.baseline.number}: {gate.verdict.upper()}</h3>"
                  f"<table><tr><th>suite</th><th>before</th><th>after</th><th>Δ</th><th>95% CI of Δ</th><th>n</th>"
                  f"<th>tolerance</th><th>lineage budget</th><th>verdict</th></tr>{rows}</table><ul>{reasons}</ul>")
        if flips:
            gates += ("<details><summary>cases that flipped pass→fail</summary><table><tr><th>suite</th><th>prompt</th>"
                      f"<th>expected</th><th>before</th><th>after</th></tr>{flips}</table></details>")
    curves = ""
    for job in TrainingJob.objects.filter(status="succeeded").select_related("skill").order_by("pk"):
        points = list(MetricPoint.objects.filter(job=job).values_list("step", "loss", "kl"))
        curves += (f"<h3>job {job.pk}: {job.method.upper()} {html.escape(job.skill.slug)}</h3>"
                   + curve_svg([(s, loss) for s, loss, _ in points], label="loss")
                   + (curve_svg([(s, kl) for s, _, kl in points], label="KL") if job.method == "sdft" else ""))
    ready_rows = "".join(
        f"<tr><td>{html.escape(slug)}</td><td>{r['teacher_passed']}/{r['n']}</td><td>{r['student_passed']}/{r['n']}</td>"
        f"<td>{html.escape(r['verdict'])}</td><td style='text-align:left'>{html.escape(r['message'])}</td></tr>"
        for slug, r in readiness if r)
    ready_html = ("<h2>Readiness check</h2><p class='muted'>Greedy answers of the teacher (the row's demonstration in "
                  "context) and of the student (the prompt alone) on training rows; SDFT can only teach what the "
                  "teacher shows.</p><table><tr><th>skill</th><th>teacher</th><th>student</th><th>verdict</th>"
                  f"<th>why</th></tr>{ready_rows}</table>") if ready_rows else ""
    outcome_html = ("<h2>Outcome</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in outcome) + "</ul>"
                    if outcome else "")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Accrete demo report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#111827}}table{{border-collapse:collapse;margin:.5rem 0}}
td,th{{border:1px solid #e5e7eb;padding:.35rem .6rem;text-align:center}}.muted{{color:#6b7280}}</style></head><body>
<h1>Accrete demo report</h1><p class="muted">{stamp}. One model, skill after skill; every candidate gated on every
skill and on the retention probes.</p>
{outcome_html}{ready_html}<h2>Forgetting matrix</h2><p class="muted">Score per eval suite; Δ against each version's parent; for gated
versions, the lineage budget (Δ against the skill's best production score, or the base model for the probes, and
how much of the cumulative budget is left). These are the stored eval runs the gates used.</p>
<table><tr><th>version</th>{head}<th>status</th><th>gate</th></tr>{body}</table>
<h2>Gates</h2>{gates}<h2>Training curves</h2>{curves}</body></html>"""
    path = out_dir / "demo-report.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
