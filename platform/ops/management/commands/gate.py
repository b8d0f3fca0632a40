"""`manage.py gate v3`: run or show a candidate's gate; `--rerun` runs a failed gate again. The table is
registry.reports.gate_table, the one plain-text form of a gate (the demo prints the same)."""

import json
from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError

from config.errors import AccreteError
from ops.operator import as_operator
from registry.errors import GateNotReady
from registry.models import GateResult, ModelVersion
from registry.reports import gate_table
from registry.services.gates import gate_rerun
from registry.services.remedies import remedy_of_gate


class Command(BaseCommand):
    help = "Run (or show) the regression gate of a candidate version. Exit 0 on pass, 1 on block or refusal."

    def add_arguments(self, parser):
        parser.add_argument("version", help="Version number, e.g. 3 or v3.")
        parser.add_argument("--json", action="store_true", help="Print the gate result as JSON.")
        parser.add_argument("--rerun", action="store_true",
                            help="Run the gate of a version whose gate failed again (scores already computed "
                                 "are reused).")

    @as_operator("gate")
    def handle(self, *args, **opts):
        number = opts["version"].lstrip("v")
        try:
            version = ModelVersion.objects.get(number=int(number))
        except (ValueError, ModelVersion.DoesNotExist):
            raise CommandError(f"No version {opts['version']!r}.") from None
        if opts["rerun"]:
            try:
                gate_rerun(version=version, actor=None, enqueue=False)  # the operator (audited as such)
            except AccreteError as exc:
                self.stderr.write(f"Refused: {exc}")
                raise SystemExit(1) from None
            self._run(version)
        gate = GateResult.objects.filter(candidate=version).first()
        if gate is None:
            version.refresh_from_db()
            if version.status == ModelVersion.Status.FAILED:
                raise CommandError(f"The gate of v{version.number} failed: {version.gate_error or 'no reason kept'}. "
                                   f"Run it again with `manage.py gate v{version.number} --rerun`.")
            if version.status not in {ModelVersion.Status.CANDIDATE, ModelVersion.Status.EVALUATING}:
                raise CommandError(f"v{version.number} is {version.get_status_display().lower()} and was never "
                                   "gated.")
            self._run(version)
            gate = GateResult.objects.filter(candidate=version).first()
            if gate is None:
                version.refresh_from_db()
                raise CommandError(f"v{version.number} is {version.get_status_display().lower()}: it was not "
                                   "gated" + (f" ({version.gate_error})" if version.gate_error else "") + ".")
        self._show(version, gate, as_json=opts["json"])

    def _run(self, version):
        from workers import pipeline

        try:
            pipeline.run_candidate_gate(version.pk)
        except GateNotReady as exc:
            raise CommandError(f"{exc} (another worker is scoring a suite; try again shortly).") from None
        except Exception as exc:  # the pipeline failed the gate with this reason; it can be re-run
            raise CommandError(f"The gate of v{version.number} failed: {type(exc).__name__}: {exc}. "
                               f"Run it again with `manage.py gate v{version.number} --rerun`.") from None

    def _show(self, version, gate, *, as_json: bool):
        if as_json:
            self.stdout.write(json.dumps({
                "candidate": version.number, "baseline": gate.baseline.number, "verdict": gate.verdict,
                "status": ModelVersion.objects.get(pk=version.pk).status, "rows": gate.rows,
                "reasons": gate.reasons, "remedy": asdict(remedy) if (remedy := remedy_of_gate(gate)) else None,
                "flipped": gate.flipped}, indent=2, ensure_ascii=False))
        else:
            self.stdout.write(gate_table(gate))
        if gate.verdict == GateResult.Verdict.BLOCK:
            raise SystemExit(1)
