"""The forgetting matrix and a gate as plain text (`manage.py gate`, the demo's terminal output).

The data comes from the selectors (`forgetting_matrix`, `gate_report`), the same dicts the pages and the
demo's HTML report render; the numbers go through `pct` and `signed_pct`, the same functions the
templates use as filters (frontend/templatetags/accrete.py), so a terminal and a page never disagree on
a delta."""

from registry.models import GateResult
from registry.selectors import gate_report


def pct(value) -> str:
    """0.8 → 80%; no value → —."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.0f}%"


def signed_pct(value) -> str:
    """A change of a score in percentage points: 0.6 → +60 pts, -0.1 → -10 pts, 0 → ±0."""
    if value is None:
        return "—"
    points = float(value) * 100
    if abs(points) < 0.05:
        return "±0"
    return f"{points:+.0f} pts"


# --- the forgetting matrix --------------------------------------------------------------------------

def _matrix_cell(cell: dict) -> str:
    if cell["score"] is None:
        return "—"
    delta = f" ({signed_pct(cell['delta'])})" if cell["delta"] is not None else ""
    return pct(cell["score"]) + delta


def matrix_table(matrix: dict) -> str:
    """Versions × suites: each score, its delta against the version's parent, and the version's status."""
    names = [column["name"][:16] for column in matrix["columns"]]
    labels = [row["label"] + (f" [{row['method']}]" if row["method"] else "") for row in matrix["rows"]]
    width = max([24, *(len(label) + 1 for label in labels)])  # a label is never cut
    lines = [f"{'version':<{width}}" + "".join(f"{name:>18}" for name in names) + "  status"]
    for label, row in zip(labels, matrix["rows"], strict=True):
        cells = "".join(f"{_matrix_cell(cell):>18}" for cell in row["cells"])
        lines.append(f"{label:<{width}}{cells}  {row['status']}")
    return "\n".join(lines)


# --- a gate -------------------------------------------------------------------------------------------

def _interval_text(row: dict) -> str:
    interval = row.get("interval")
    if not interval:
        return "—" if "interval" in row else ""
    return f"[{interval[0] * 100:+.0f}, {interval[1] * 100:+.0f}]"


def lineage_text(row: dict) -> str:
    """One line: the lineage reference of a gate row (its best production score, or the base model)."""
    ref = row["lineage"]
    where = f"base v{ref['version']}" if ref["kind"] == "base" else f"best v{ref['version']}"
    left = f"{ref['left'] * 100:.0f} pts left" if ref["left"] >= 0 else f"{-ref['left'] * 100:.0f} pts over"
    return (f"{row['name']}: {ref['score']:.0%} at {where} → {row['after']:.0%} now, {ref['delta'] * 100:+.0f} "
            f"pts (budget {ref['budget']:.0%}, {left}): {ref['verdict']}")


def gate_table(gate: GateResult) -> str:
    """The gate's verdict, one line per suite, the lineage budget, warnings, reasons, the remedy and the
    first cases that flipped pass→fail."""
    report = gate_report(gate)
    lines = [f"Gate for v{report['candidate'].number} against v{report['baseline'].number}: "
             f"{report['verdict'].upper()}",
             f"{'suite':<22} {'before':>7} {'after':>7} {'delta':>9} {'95% CI (pts)':>12} {'n':>4} {'tol':>5}  verdict"]
    for row in report["rows"]:
        lines.append(f"{row['name'][:22]:<22} {pct(row['before']):>7} {pct(row['after']):>7} "
                     f"{signed_pct(row['delta']):>9} {_interval_text(row):>12} {row['n']:>4} "
                     f"{pct(row['tolerance']):>5}  {row['verdict']}{'  (skill added)' if row.get('target') else ''}")
    if report["lineage_rows"]:
        lines.append("  lineage budget (each skill vs its best since it entered production, probes vs the base):")
        lines.extend(f"    {lineage_text(row)}" for row in report["lineage_rows"])
    lines.extend(f"  warning: {name}: {warning}" for name, warning in report["warnings"])
    lines.extend(f"  blocked: {reason}" for reason in report["reasons"])
    remedy = report["remedy"]
    if remedy is not None:
        lines.append(f"  remedy: {remedy.action}")
        lines.append(f"    why: {remedy.reason}")
    if report["dropped"]:
        lines.append(f"  {len(report['dropped'])} case(s) flipped pass→fail, e.g.:")
        for f in report["dropped"][:5]:
            lines.append(f"    [{f['suite']}] {f['prompt'][:60]!r}: expected {f['expected'][:30]!r}, "
                         f"was {f['old_output'][:30]!r}, now {f['new_output'][:30]!r}")
    return "\n".join(lines)
