"""`manage.py gate v3`: run or show a candidate's gate; the table is registry.reports.gate_table, the one
plain-text form of a gate (the demo prints the same)."""

import json
from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError

from registry.models import GateResult, ModelVersion
from registry.reports import gate_table
from registry.services.remedies import remedy_of_gate


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
