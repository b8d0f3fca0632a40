"""Registering an imported base model: the BaseModel row, the root of its lineage, and its retention
probe suite (scored on the base right after, so only probes the base gets right count)."""

from django.db import transaction

from audit.services import audit_record
from registry.models import BaseModel, ModelVersion
from registry.services.versions import version_register_base
from skills.models import EvalCase, EvalSuite


@transaction.atomic
def base_model_register(*, name: str, source: str, source_path: str, artifact_path: str, sha256: str,
                        architecture: str, num_parameters: int, context_length: int | None, probes: list,
                        probe_tolerance: float | None = None, actor=None) -> ModelVersion:
    base = BaseModel.objects.create(
        name=name, source=source, source_path=source_path, artifact_path=artifact_path, sha256=sha256,
        architecture=architecture, num_parameters=num_parameters, context_length=context_length or 2048,
        probe_tolerance=probe_tolerance, created_by=actor,
    )
    suite = EvalSuite.objects.create(kind=EvalSuite.Kind.PROBES, source=EvalSuite.Source.BUILTIN)
    BaseModel.objects.filter(pk=base.pk).update(probe_suite=suite)
    EvalCase.objects.bulk_create([
        EvalCase(suite=suite, key=p.id, category=p.category, prompt=p.messages, reference=p.reference,
                 scorer=p.scorer, scorer_options=p.options)
        for p in probes
    ])
    audit_record(actor=actor, action="base_model.imported", obj=base,
                 data={"name": name, "source": source, "sha256": sha256, "probes": len(probes),
                       "probe_tolerance": probe_tolerance})
    return version_register_base(base_model=base, actor=actor)
