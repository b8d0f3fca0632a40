import hashlib
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ops.operator import as_operator
from registry.models import BaseModel
from registry.services.base_models import base_model_register


class Command(BaseCommand):
    help = ("Import a base model (a GGUF file, dequantized and saved once as safetensors, or a Hugging Face "
            "folder), register it as the root of a lineage and score it on the retention probes.")

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--gguf", help="Path to a .gguf file.")
        source.add_argument("--hf", help="Path to a Hugging Face folder (config.json, *.safetensors, tokenizer).")
        parser.add_argument("--name", required=True)
        parser.add_argument("--skip-probes", action="store_true", help="Do not score the retention probes now.")
        parser.add_argument("--probe-tolerance", type=float, default=None,
                            help="Largest retention-probe drop the gate accepts for this lineage, 0..1 "
                                 "(default: ACCRETE_PROBE_TOLERANCE).")

    @as_operator("import_base_model")
    def handle(self, *args, **opts):
        from workers.engine.contract.probes import load_probes
        from workers.engine.model_io import ModelImportError, import_gguf, import_hf
        from workers.pipeline import artifact_keep_cached, artifact_publish, artifacts_root, run_base_probes

        tolerance = opts["probe_tolerance"]
        if tolerance is not None and not 0.0 <= tolerance <= 1.0:
            raise CommandError(f"--probe-tolerance {tolerance} is out of range: use a share between 0 and 1 (0.1 = 10 points).")
        existing = BaseModel.objects.filter(name=opts["name"]).first()
        if existing is not None:
            self.stdout.write(f"Base model {existing.name} is already imported ({existing.sha256[:12]}); nothing to do.")
            return
        source = Path(opts["gguf"] or opts["hf"]).resolve()
        digest = hashlib.sha256(f"{opts['name']}:{source}".encode()).hexdigest()[:12]
        rel = Path("base") / f"{opts['name']}-{digest}"
        dest = artifacts_root() / rel  # the store itself, or a staging folder when the store is remote
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.stdout.write(f"Importing {source} → {dest} …")
        try:
            imported = import_gguf(source, dest) if opts["gguf"] else import_hf(source, dest)
        except (ModelImportError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
        remote = artifact_publish(dest, str(rel))
        version = base_model_register(
            name=opts["name"], source="gguf" if opts["gguf"] else "hf", source_path=str(source), artifact_path=str(rel),
            sha256=imported.sha256, architecture=imported.architecture, num_parameters=imported.num_parameters,
            context_length=imported.context_length, probes=load_probes(), probe_tolerance=tolerance,
        )
        if remote:
            artifact_keep_cached(dest, version.checksums)
        self.stdout.write(f"Registered {opts['name']} as v{version.number} ({version.status}); "
                          f"{imported.num_parameters / 1e6:.0f}M parameters, sha256 {imported.sha256[:12]}.")
        if not opts["skip_probes"]:
            self.stdout.write("Scoring the retention probes on the base model …")
            run_base_probes(version.pk)
            run = version.eval_runs.first()
            counted = run.suite.cases.filter(counted=True).count() if run else 0
            total = run.suite.cases.count() if run else 0
            self.stdout.write(f"The base model answers {counted}/{total} probes correctly; those {counted} count "
                              "from now on (any later miss is forgetting).")
