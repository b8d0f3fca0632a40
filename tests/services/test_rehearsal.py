"""Rehearsal: a skill trained on top of earlier skills mixes their *training* rows into its anchors,
never a held-out case the gate scores."""

import json

import pytest

from workers.pipeline import rehearsal_rows, retention_rows


def _upload(skill, tmp_path, actor, prompts):
    from skills.services import demonstration_set_upload

    path = tmp_path / f"{skill.slug}.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "demonstration": f"Filed: {i}"}) + "\n" for i, p in enumerate(prompts)))
    outcome = demonstration_set_upload(skill=skill, path=path, filename=path.name, actor=actor)
    assert outcome.ok, outcome.report.problems
    return outcome


@pytest.fixture
def lineage(people, tiny_production, tmp_path):
    """v1 base → v2 added "filing" (trained on its training rows) → a job for "routing" from v2."""
    from registry.services.versions import version_create_candidate
    from skills.services import skill_create
    from training.models import TrainingJob

    filing = skill_create(team=people["legal"], slug="filing", name="Filing", actor=people["bob"], scorer="exact",
                          teacher_style="turn")
    routing = skill_create(team=people["legal"], slug="routing", name="Routing", actor=people["bob"], scorer="exact")
    _upload(filing, tmp_path, people["alice"], [f"File contract number {i} under the right cabinet." for i in range(30)])
    _upload(routing, tmp_path, people["alice"], [f"Route request {i} to a desk." for i in range(30)])
    filing_job = TrainingJob.objects.create(skill=filing, demonstration_set=filing.demonstration_sets.get(),
                                            parent_version=tiny_production, status="succeeded",
                                            requested_by=people["alice"])
    v2 = version_create_candidate(job=filing_job, artifact_path="versions/v2", adapter_path="", checksums={}, metrics={})
    routing_job = TrainingJob.objects.create(skill=routing, demonstration_set=routing.demonstration_sets.get(),
                                             parent_version=v2, status="running", requested_by=people["alice"],
                                             config={"anchor_ratio": 1.0})
    return filing, routing, routing_job


def _contents(rows):
    return {row.prompt[-1]["content"] for row in rows}


def test_rehearsal_brings_the_earlier_skills_training_rows_and_none_of_its_held_out_cases(lineage):
    from skills.models import EvalCase

    # given "filing" in the lineage, with 6 of its 30 rows held out for the gate
    filing, routing, job = lineage
    training = {row.prompt[-1]["content"] for row in filing.demonstration_sets.get().rows.all()}
    held_out = {case.prompt[-1]["content"] for case in EvalCase.objects.filter(suite__skill=filing)}
    assert len(training) == 24 and len(held_out) == 6
    # when routing's job gathers its rehearsal rows
    rows = rehearsal_rows(job, "anchor", None)
    # then they are exactly filing's training prompts, as plain anchors, and no held-out case
    assert _contents(rows) == training
    assert not _contents(rows) & held_out
    assert all(row.is_anchor for row in rows)
    # and nothing of the skill being trained (its rows are skill rows, not rehearsal)
    assert not any("Route request" in text for text in _contents(rows))


def test_a_training_row_that_another_upload_holds_out_is_never_rehearsed(lineage):
    from skills.models import Demonstration, EvalCase

    # given a later upload made one of filing's held-out cases a training row of the set the version used
    filing, routing, job = lineage
    case = EvalCase.objects.filter(suite__skill=filing).first()
    dset = filing.demonstration_sets.get()
    Demonstration.objects.create(demonstration_set=dset, line=99, prompt=case.prompt, demonstration=case.reference,
                                 content_hash="f" * 64)
    # when rehearsal rows are gathered, then the case the gate scores is still not among them
    assert case.prompt[-1]["content"] not in _contents(rehearsal_rows(job, "demonstration", None))


def test_demonstration_rehearsal_keeps_the_earlier_skills_demonstrations_and_teacher_style(lineage):
    filing, routing, job = lineage
    rows = rehearsal_rows(job, "demonstration", None)
    assert len(rows) == 24
    assert all(row.demonstration.startswith("Filed: ") and row.teacher_style == "turn" for row in rows)


def test_rehearsal_can_be_limited_to_named_skills_or_turned_off(lineage):
    filing, routing, job = lineage
    assert rehearsal_rows(job, "anchor", ["some-other-skill"]) == []
    assert len(rehearsal_rows(job, "anchor", ["filing"])) == 24
    assert rehearsal_rows(job, "off", None) == []


def test_an_anchored_jobs_pool_is_the_shipped_anchors_plus_rehearsal_and_none_when_unanchored(lineage):
    from workers.engine.contract.anchors import load_anchor_pool
    from workers.engine.contract.config import TrainConfig

    filing, routing, job = lineage
    pool = load_anchor_pool()
    rows = retention_rows(job, TrainConfig(anchor_ratio=1.0, anchor_pool_sha256=pool.sha256))
    assert len(rows) == len(pool.prompts) + 24
    assert retention_rows(job, TrainConfig(anchor_ratio=0.0)) == []


def test_a_job_requested_with_another_anchor_pool_is_refused_by_the_worker(lineage):
    from workers.engine.contract.config import TrainConfig

    filing, routing, job = lineage
    with pytest.raises(ValueError, match="the anchor pool changed since job"):
        retention_rows(job, TrainConfig(anchor_ratio=1.0, anchor_pool_sha256="0" * 64))


def test_a_pool_that_repeats_a_probe_of_the_lineage_is_refused_before_training(lineage, monkeypatch):
    from skills.models import EvalCase, EvalSuite
    from workers.engine.contract import anchors
    from workers.engine.contract.config import TrainConfig

    # given an operator imported probes one of which is a shipped anchor, word for word
    filing, routing, job = lineage
    pool = anchors.load_anchor_pool()
    suite = EvalSuite.objects.get(kind=EvalSuite.Kind.PROBES, base_model=job.parent_version.base_model)
    EvalCase.objects.create(suite=suite, key="imported-1", prompt=[{"role": "user", "content": pool.prompts[5]}],
                            reference="x")
    # then the job refuses to train on it, naming the anchor
    with pytest.raises(ValueError, match=pool.ids[5]):
        retention_rows(job, TrainConfig(anchor_ratio=1.0, anchor_pool_sha256=pool.sha256))
