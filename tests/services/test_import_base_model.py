"""`manage.py import_base_model`: the probe tolerance of a lineage is set at import and checked first."""

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from registry.models import BaseModel, ModelVersion


def test_import_sets_the_lineages_probe_tolerance(db, tiny_model_dir, settings, tmp_path):
    settings.ACCRETE_ARTIFACTS = tmp_path / "artifacts"
    settings.ACCRETE_PROBE_TOLERANCE = 0.0
    # when
    call_command("import_base_model", hf=str(tiny_model_dir), name="tiny", probe_tolerance=0.3, skip_probes=True)
    # then
    base = BaseModel.objects.get(name="tiny")
    assert base.probe_tolerance == 0.3 and base.effective_probe_tolerance == 0.3
    assert ModelVersion.objects.get(base_model=base).status == "production"
    assert AuditEvent.objects.get(action="base_model.imported").data["probe_tolerance"] == 0.3


def test_without_it_the_platform_default_applies(db, tiny_model_dir, settings, tmp_path):
    settings.ACCRETE_ARTIFACTS = tmp_path / "artifacts"
    settings.ACCRETE_PROBE_TOLERANCE = 0.05
    call_command("import_base_model", hf=str(tiny_model_dir), name="tiny", skip_probes=True)
    base = BaseModel.objects.get(name="tiny")
    assert base.probe_tolerance is None and base.effective_probe_tolerance == 0.05


def test_an_out_of_range_tolerance_is_refused_before_anything_is_written(db, tiny_model_dir, settings, tmp_path):
    settings.ACCRETE_ARTIFACTS = tmp_path / "artifacts"
    with pytest.raises(CommandError, match=r"--probe-tolerance 20.0 is out of range.*0.1 = 10 points"):
        call_command("import_base_model", hf=str(tiny_model_dir), name="tiny", probe_tolerance=20.0)
    assert not BaseModel.objects.exists() and not (tmp_path / "artifacts").exists()
