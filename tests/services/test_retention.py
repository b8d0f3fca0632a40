"""The retention policy (registry.services.retention): merged weights of blocked, rejected, stale and failed
candidates older than ACCRETE_RETENTION_DAYS go; adapters stay; production, its lineage and anything another
version needs never go; every deletion is audited; a dry run deletes nothing. On a local store and on an
S3-compatible one (moto's server)."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from registry.models import ModelVersion
from registry.services.retention import retention_apply, retention_plan
from tests.fixtures.registry import promote
from tests.fixtures.skills import skill_with_cases
from workers.engine.contract.storage import ArtifactMissing, open_store

MERGED = ["config.json", "model.safetensors", "tokenizer.json"]
KEPT = ["accrete.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"]
OLD, YOUNG = timedelta(days=20), timedelta(days=3)


@pytest.fixture(params=["local", "s3"])
def store(request, settings, tmp_path):
    if request.param == "local":
        (tmp_path / "artifacts").mkdir()
        settings.ACCRETE_ARTIFACTS = tmp_path / "artifacts"
    else:
        settings.ACCRETE_ARTIFACTS = request.getfixturevalue("s3_bucket").url("artifacts")
    settings.ACCRETE_RETENTION_DAYS = 14
    return open_store(settings.ACCRETE_ARTIFACTS)


@dataclass
class Registry:
    v: dict  # name -> ModelVersion
    store: object

    def numbers(self, *names) -> list[int]:
        return sorted(self.v[name].number for name in names)

    def reload(self, name) -> ModelVersion:
        return ModelVersion.objects.get(pk=self.v[name].pk)

    def listing(self) -> dict:
        """Every folder the registry's versions point at → its files, as the store holds them now."""
        found = {}
        for version in self.v.values():
            try:
                found[version.artifact_path] = self.store.list_files(version.artifact_path)
            except ArtifactMissing:
                found[version.artifact_path] = []
        return found


def _store_files(store, tmp_path, version, *, age, adapter=True):
    """Write a version's folder into the store as training leaves it, and date it `age` ago."""
    folder = tmp_path / "build" / str(version.number)
    (folder / "adapter").mkdir(parents=True)
    for name in MERGED:
        (folder / name).write_bytes(name.encode() * 1000)
    (folder / "accrete.json").write_text("{}")
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"lora" * 10)
    store.put_tree(folder, version.artifact_path)
    from workers.engine.artifacts import sha256_tree

    ModelVersion.objects.filter(pk=version.pk).update(
        created_at=timezone.now() - age, adapter_path=f"{version.artifact_path}/adapter" if adapter else "",
        checksums=sha256_tree(folder))


@pytest.fixture
def registry(store, people, base_version, make_candidate, tmp_path) -> Registry:
    """v1 the base (retired), v2 production; around them every kind of candidate, old and young."""
    from registry.services.approvals import approval_decide, promotion_request_create
    from registry.services.gates import gate_fail

    codes = skill_with_cases(people["legal"], "policy-codes")
    tagging = skill_with_cases(people["legal"], "tagging")
    v = {"base": base_version}
    # candidates of v1
    v["blocked"] = make_candidate(codes, status="blocked")
    v["young_blocked"] = make_candidate(codes, status="blocked")
    v["blocked_parent"] = make_candidate(codes, status="blocked")  # another candidate was trained from it
    v["child"] = make_candidate(tagging, parent=v["blocked_parent"], status="candidate")
    v["rejected"] = make_candidate(codes)
    approval_decide(request=promotion_request_create(version=v["rejected"], actor=people["dave"]),
                    approver=people["bob"], decision="reject")
    v["stale"] = make_candidate(codes)
    v["stale_without_adapter"] = make_candidate(codes)
    v["production"] = promote(make_candidate(codes), requester=people["alice"], approver=people["bob"])
    # candidates of v2, of a skill added since (v2 never answered it)
    filing = skill_with_cases(people["legal"], "filing")
    v["failed"] = make_candidate(filing, parent=v["production"], status="evaluating")
    assert gate_fail(version=v["failed"], error="the worker died")
    v["awaiting"] = make_candidate(filing, parent=v["production"])
    v["not_gated"] = make_candidate(filing, parent=v["production"], status="candidate")
    v["rejected_sharing"] = make_candidate(filing, parent=v["production"])
    approval_decide(request=promotion_request_create(version=v["rejected_sharing"], actor=people["dave"]),
                    approver=people["bob"], decision="reject")
    # a rejected candidate whose row points at production's folder (as a hand-made one might)
    ModelVersion.objects.filter(pk=v["rejected_sharing"].pk).update(artifact_path=v["production"].artifact_path)
    for name, version in v.items():
        version.refresh_from_db()
        if name != "rejected_sharing":
            _store_files(store, tmp_path, version, age=YOUNG if name == "young_blocked" else OLD,
                         adapter=name not in {"stale_without_adapter", "base"})
    ModelVersion.objects.filter(pk=v["rejected_sharing"].pk).update(
        created_at=timezone.now() - OLD, adapter_path=f"{v['production'].artifact_path}/adapter")
    for version in v.values():
        version.refresh_from_db()
    expected = {"base": "retired", "production": "production", "blocked": "blocked", "young_blocked": "blocked",
                "blocked_parent": "blocked", "child": "candidate", "rejected": "rejected", "stale": "stale",
                "stale_without_adapter": "stale", "failed": "failed", "awaiting": "awaiting_approval",
                "not_gated": "candidate", "rejected_sharing": "rejected"}
    assert {name: version.status for name, version in v.items()} == expected
    return Registry(v=v, store=store)


DELETED = ("blocked", "rejected", "stale")  # not "failed": a failed gate can be re-run, so it keeps its weights


def test_the_plan_lists_exactly_the_expired_dead_ends(registry):
    # when
    plan = retention_plan()
    # then: blocked, rejected, stale and failed candidates past 14 days — not the young one, not one another
    # version was trained from, not one without an adapter, not one sharing production's folder, never the
    # lineage (base, production) and never a candidate still in the running
    assert [item.version.number for item in plan] == registry.numbers(*DELETED)
    for item in plan:
        assert item.files == MERGED and item.kept == KEPT
        assert item.bytes == sum(len(name.encode() * 1000) for name in MERGED)


def test_applying_it_deletes_those_merged_weights_keeps_the_adapters_and_audits_each(registry):
    before = registry.listing()
    # when
    done = retention_apply()
    # then exactly the merged weights of those four are gone from the store; every other file is where it was
    assert [item.version.number for item in done] == registry.numbers(*DELETED)
    after = registry.listing()
    deleted_folders = {registry.v[name].artifact_path for name in DELETED}
    assert {key: files for key, files in after.items() if key in deleted_folders} == dict.fromkeys(deleted_folders, KEPT)
    assert {key: files for key, files in after.items() if key not in deleted_folders} == {
        key: files for key, files in before.items() if key not in deleted_folders}
    # each version records it, and the audit log says what went, from which version
    for name in DELETED:
        version = registry.reload(name)
        assert version.artifact_path == "" and version.adapter_path == f"{registry.v[name].artifact_path}/adapter"
    events = AuditEvent.objects.filter(action="artifact.deleted").order_by("pk")
    assert [(e.data["version"], e.data["files"], e.data["kept"]) for e in events] == [
        (number, MERGED, KEPT) for number in registry.numbers(*DELETED)]
    assert {e.object_id for e in events} == {str(registry.v[name].pk) for name in DELETED}
    assert all(e.team.slug == "legal" for e in events)
    # and a second run finds nothing left to do
    assert retention_apply() == []


def test_a_version_whose_weights_were_deleted_says_so_on_load(registry):
    from workers.pipeline import version_model_dir

    retention_apply()
    stale = registry.reload("stale")
    with pytest.raises(ArtifactMissing, match=rf"merged weights of v{stale.number} were deleted by the retention "
                                              r"policy on \d{4}-\d\d-\d\d .* adapter is kept at versions/"):
        version_model_dir(stale)


def test_a_dry_run_deletes_nothing(registry):
    before = registry.listing()
    # when
    would = retention_apply(dry_run=True)
    # then it says what would go, and nothing went
    assert [item.version.number for item in would] == registry.numbers(*DELETED)
    assert registry.listing() == before
    assert not AuditEvent.objects.filter(action="artifact.deleted").exists()
    assert all(registry.reload(name).artifact_path == registry.v[name].artifact_path for name in DELETED)


def test_the_policy_is_off_at_zero_days(registry, settings):
    settings.ACCRETE_RETENTION_DAYS = 0
    assert retention_plan() == [] and retention_apply() == []


def test_a_candidate_becomes_due_only_after_the_configured_days(registry):
    young = registry.v["young_blocked"]
    assert young.number not in [item.version.number for item in retention_plan()]
    later = timezone.now() + timedelta(days=12)
    assert young.number in [item.version.number for item in retention_plan(now=later)]


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_the_operator_command_prints_the_plan_and_audits_as_the_operator(registry, capsys):
    # when the operator asks for a dry run
    call_command("retention", dry_run=True)
    out = capsys.readouterr().out
    # then every version due is a row, and nothing went
    for name in DELETED:
        assert f"v{registry.v[name].number} " in out and registry.v[name].artifact_path in out
    assert "Nothing was deleted" in out and not AuditEvent.objects.filter(action="artifact.deleted").exists()
    # when the operator applies it
    call_command("retention")
    assert "Deleted the merged weights of 3 version(s)" in capsys.readouterr().out
    labels = set(AuditEvent.objects.filter(action="artifact.deleted").values_list("actor_label", flat=True))
    assert len(labels) == 1 and labels.pop().startswith("operator ")


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_the_beat_runs_it_daily(registry):
    from config.celery_app import app
    from workers.tasks import apply_retention

    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule["workers.tasks.apply_retention"] == 24 * 3600
    assert apply_retention() == registry.numbers(*DELETED)
