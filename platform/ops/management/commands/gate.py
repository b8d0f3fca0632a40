import json
from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError

from registry.models import GateResult, ModelVersion
from registry.services.remedies import remedy_of_gate


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
    lines = [f"Gate for v{gate.candidate.number} against v{gate.baseline.number}: {gate.verdict.upper()}",
             f"{'suite':<22} {'before':>7} {'after':>7} {'delta':>7} {'95% CI (pts)':>12} {'n':>4} {'tol':>5}  verdict"]
    for row in gate.rows:
        lines.append(f"{row['name'][:22]:<22} {row['before']:>7.0%} {row['after']:>7.0%} {row['delta']:>+7.0%} "
                     f"{_interval_text(row):>12} {row.get('n', row['total']):>4} {row['tolerance']:>5.0%}  "
                     f"{row['verdict']}{'  (skill added)' if row.get('target') else ''}")
    lineage = [row for row in gate.rows if row.get("lineage")]
    if lineage:
        lines.append("  lineage budget (each skill vs its best since it entered production, probes vs the base):")
        lines.extend(f"    {lineage_text(row)}" for row in lineage)
    for row in gate.rows:
        if row.get("warning"):
            lines.append(f"  warning: {row['name']}: {row['warning']}")
    for reason in gate.reasons:
        lines.append(f"  blocked: {reason}")
    remedy = remedy_of_gate(gate)
    if remedy is not None:
        lines.append(f"  remedy: {remedy.action}")
        lines.append(f"    why: {remedy.reason}")
    drops = [f for f in gate.flipped if f["direction"] == "pass→fail"]
    if drops:
        lines.append(f"  {len(drops)} case(s) flipped pass→fail, e.g.:")
        for f in drops[:5]:
            lines.append(f"    [{f['suite']}] {f['prompt'][:60]!r}: expected {f['expected'][:30]!r}, "
                         f"was {f['old_output'][:30]!r}, now {f['new_output'][:30]!r}")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Run (or show) the regression gate of a candidate version. Exit 0 on pass, 1 on block."

    def add_arguments(self, parser):
        parser.add_argument("version", help="Version number, e.g. 3 or v3.")
        parser.add_argument("--json", action="store_true", help="Print the gate result as JSON.")

    def handle(self, *args, **opts):
        number = opts["version"].lstrip("v")
        try:
            version = ModelVersion.objects.get(number=int(number))
        except (ValueError, ModelVersion.DoesNotExist):
            raise CommandError(f"No version {opts['version']!r}.") from None
        gate = GateResult.objects.filter(candidate=version).first()
        if gate is None:
            if version.status not in {ModelVersion.Status.CANDIDATE, ModelVersion.Status.EVALUATING}:
                raise CommandError(f"v{version.number} is {version.status} and was never gated.")
            from workers.pipeline import run_candidate_gate

            run_candidate_gate(version.pk)
            gate = GateResult.objects.get(candidate=version)
        if opts["json"]:
            self.stdout.write(json.dumps({
                "candidate": version.number, "baseline": gate.baseline.number, "verdict": gate.verdict,
                "status": ModelVersion.objects.get(pk=version.pk).status, "rows": gate.rows,
                "reasons": gate.reasons, "remedy": asdict(remedy) if (remedy := remedy_of_gate(gate)) else None,
                "flipped": gate.flipped}, indent=2, ensure_ascii=False))
        else:
            self.stdout.write(gate_table(gate))
        if gate.verdict == GateResult.Verdict.BLOCK:
            raise SystemExit(1)
