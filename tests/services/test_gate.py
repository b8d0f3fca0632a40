"""The regression gate: a candidate against its parent on every active skill and the retention probes.

The first half writes scores by hand (no model); the second gates real candidates of the tiny random
Llama through workers.pipeline.run_candidate_gate."""

from pathlib import Path

import pytest

from audit.models import AuditEvent
from evaluation.models import EvalRun
from registry.errors import GateNotReady
from registry.models import GateResult, ModelVersion
from registry.services.gates import gate_evaluate
from tests.fixtures.gate import ECHO_PROMPTS
from tests.fixtures.registry import probe_suite, promote, scores_grid, scores_record
from tests.fixtures.skills import skill_with_cases

# --- synthetic scores -------------------------------------------------------------------------------


@pytest.fixture
def legal_skills(people):
    """"policy-codes" (already in production, 20 cases) and "tagging" (the skill being added)."""
    return {
        "codes": skill_with_cases(people["legal"], "policy-codes", tolerance=0.1),
        "tagging": skill_with_cases(people["legal"], "tagging"),
    }


def _gated(make_candidate, base_version, skills, *, codes_after: int, tagging_before=0, tagging_after=20,
           codes_before=20):
    candidate = make_candidate(skills["tagging"], status="evaluating")
    scores_record(base_version, skills["codes"], passing=codes_before)
    scores_record(base_version, skills["tagging"], passing=tagging_before)
    scores_record(candidate, skills["codes"], passing=codes_after)
    scores_record(candidate, skills["tagging"], passing=tagging_after)
    return candidate, gate_evaluate(candidate=candidate)


@pytest.mark.parametrize(("flipped", "verdict", "status"), [
    (1, "pass", "awaiting_approval"),  # a 5-point drop, inside the 10-point tolerance
    (2, "pass", "awaiting_approval"),  # exactly the tolerance: the largest drop it accepts
    (3, "block", "blocked"),  # a 15-point drop
])
def test_a_skill_tolerates_drops_up_to_its_tolerance(make_candidate, base_version, legal_skills, flipped,
                                                      verdict, status):
    # given policy-codes tolerates 10 points; when the candidate flips `flipped` of its 20 cases
    candidate, gate = _gated(make_candidate, base_version, legal_skills, codes_after=20 - flipped)
    # then
    candidate.refresh_from_db()
    assert (gate.verdict, candidate.status) == (verdict, status)
    assert any("policy-codes dropped" in r for r in gate.reasons) == (verdict == "block")


def test_with_tolerance_zero_any_drop_blocks(make_candidate, base_version, legal_skills):
    legal_skills["codes"].tolerance = 0.0
    legal_skills["codes"].save()
    candidate, gate = _gated(make_candidate, base_version, legal_skills, codes_after=19)
    candidate.refresh_from_db()
    assert gate.verdict == "block" and candidate.status == "blocked"
    assert gate.reasons == ["policy-codes dropped from 100% to 95% (tolerance 0%)"]


def test_the_skill_being_added_must_improve(make_candidate, base_version, legal_skills):
    # given nothing else changed and tagging stayed at 50%
    candidate, gate = _gated(make_candidate, base_version, legal_skills, codes_after=20, tagging_before=10,
                             tagging_after=10)
    # then
    candidate.refresh_from_db()
    assert gate.verdict == "block" and candidate.status == "blocked"
    assert len(gate.reasons) == 1 and gate.reasons[0].startswith("tagging (the skill being added) did not improve")
    assert [r["verdict"] for r in gate.rows] == ["pass", "block"]


def test_a_gain_below_the_skills_min_gain_blocks(make_candidate, base_version, legal_skills):
    legal_skills["tagging"].min_gain = 0.25
    legal_skills["tagging"].save()
    candidate, gate = _gated(make_candidate, base_version, legal_skills, codes_after=20, tagging_before=0,
                             tagging_after=4)  # +20 points, needs 25
    assert gate.verdict == "block" and "needs a gain > 0 and ≥ 25%" in gate.reasons[0]


def test_the_gate_result_keeps_each_suites_scores_and_the_flipped_cases(make_candidate, base_version, legal_skills):
    # when
    candidate, gate = _gated(make_candidate, base_version, legal_skills, codes_after=17, tagging_before=0,
                             tagging_after=2)
    # then: one row per suite, in skill order
    codes, tagging = gate.rows
    assert (codes["name"], codes["before"], codes["after"], codes["total"]) == ("policy-codes", 1.0, 0.85, 20)
    assert codes["delta"] == pytest.approx(-0.15) and codes["tolerance"] == 0.1 and codes["verdict"] == "block"
    assert not codes["target"] and tagging["target"] and tagging["delta"] == pytest.approx(0.1)
    assert gate.baseline == base_version and gate.candidate == candidate
    # and the three cases that regressed, each with what was asked, expected, and both answers
    drops = [f for f in gate.flipped if f["direction"] == "pass→fail"]
    assert [f["case"] for f in drops] == ["policy-codes-17", "policy-codes-18", "policy-codes-19"]
    assert drops[0] == {
        "suite": "policy-codes eval (held out from the demonstrations)", "suite_id": legal_skills["codes"].eval_suites.get().pk,
        "case": "policy-codes-17",
        "direction": "pass→fail", "prompt": "policy-codes question 17", "expected": "policy-codes answer 17",
        "old_output": "policy-codes answer 17", "new_output": "wrong 17", "detail": "",
    }
    assert [f["case"] for f in gate.flipped if f["direction"] == "fail→pass"] == ["tagging-0", "tagging-1"]


def test_gating_twice_returns_the_first_verdict_and_records_it_once(make_candidate, base_version, legal_skills):
    candidate, first = _gated(make_candidate, base_version, legal_skills, codes_after=20)
    # when
    again = gate_evaluate(candidate=ModelVersion.objects.get(pk=candidate.pk))
    # then
    assert again.pk == first.pk and GateResult.objects.count() == 1
    assert AuditEvent.objects.filter(action__startswith="gate.").count() == 1
    assert AuditEvent.objects.filter(action="version.awaiting_approval", object_id=str(candidate.pk)).count() == 1
    candidate.refresh_from_db()
    assert candidate.status == "awaiting_approval"


def test_a_missing_score_is_named_and_nothing_is_decided(make_candidate, base_version, legal_skills):
    # given the candidate has no scores on policy-codes yet
    candidate = make_candidate(legal_skills["tagging"], status="evaluating")
    scores_record(base_version, legal_skills["codes"], passing=20)
    scores_record(base_version, legal_skills["tagging"], passing=0)
    scores_record(candidate, legal_skills["tagging"], passing=20)
    # when / then
    with pytest.raises(GateNotReady) as refused:
        gate_evaluate(candidate=candidate)
    assert str(refused.value) == (f"Scores missing for: v{candidate.number} on policy-codes eval (held out from the "
                                  "demonstrations). Run the evaluations first.")
    candidate.refresh_from_db()
    assert candidate.status == "evaluating" and not GateResult.objects.exists()


def test_a_failed_eval_run_counts_as_missing(make_candidate, base_version, legal_skills):
    from evaluation.services import eval_run_claim, eval_run_fail

    candidate = make_candidate(legal_skills["tagging"], status="evaluating")
    scores_record(base_version, legal_skills["tagging"], passing=0)
    scores_record(candidate, legal_skills["tagging"], passing=20)
    scores_record(candidate, legal_skills["codes"], passing=20)
    run = eval_run_claim(version=base_version, suite=legal_skills["codes"].eval_suites.get())
    eval_run_fail(run=run, error="out of memory")
    with pytest.raises(GateNotReady, match=f"v{base_version.number} on policy-codes eval"):
        gate_evaluate(candidate=candidate)


def test_a_candidate_whose_parent_left_production_becomes_stale(make_candidate, base_version, legal_skills, people):
    # given a candidate being scored on v1 when another candidate is promoted
    skills = (legal_skills["codes"], legal_skills["tagging"])
    scores_grid(skills, {base_version: (0, 0)})
    candidate = make_candidate(legal_skills["tagging"], parent=base_version, status="evaluating")
    other = make_candidate(legal_skills["codes"])
    promote(other, requester=people["alice"], approver=people["bob"])
    scores_grid(skills, {candidate: (0, 20)})
    # when its scores are in
    gate = gate_evaluate(candidate=candidate)
    # then: it passed the comparison with v1, but v1 is no longer what it would replace
    candidate.refresh_from_db()
    assert gate.verdict == "pass" and gate.baseline == base_version
    assert candidate.status == "stale"
    assert AuditEvent.objects.get(action="version.stale", object_id=str(candidate.pk)).data["reason"] == (
        f"v{candidate.number} was trained from v{base_version.number}, but production is now v{other.number}: "
        "retrain it on the new production version.")


def test_a_gate_started_after_production_moved_marks_the_candidate_stale_and_scores_nothing(
        make_candidate, base_version, legal_skills, people):
    other = make_candidate(legal_skills["codes"])
    promote(other, requester=people["alice"], approver=people["bob"])
    candidate = make_candidate(legal_skills["tagging"], parent=base_version, status="candidate")
    # when a worker starts its gate
    import workers.pipeline as pipeline

    verdict = pipeline.run_candidate_gate(candidate.pk)
    # then
    candidate.refresh_from_db()
    assert verdict is None and candidate.status == "stale"
    assert not EvalRun.objects.filter(version=candidate).exists()


def test_a_candidate_overtaken_by_a_promotion_while_scored_stays_stale(make_candidate, base_version,
                                                                       legal_skills, people, monkeypatch):
    import workers.pipeline as pipeline

    # given a sibling awaiting approval and a candidate whose scores the worker is (re)checking
    skills = (legal_skills["codes"], legal_skills["tagging"])
    scores_grid(skills, {base_version: (0, 0)})
    other = make_candidate(legal_skills["codes"])
    candidate = make_candidate(legal_skills["tagging"], status="candidate")
    scores_grid(skills, {candidate: (0, 20)})
    scoring = pipeline.score_version_on_suites

    def promote_the_sibling_first(version, suites, generator):
        if other.status != "production":
            other.refresh_from_db()
            promote(other, requester=people["alice"], approver=people["bob"])  # marks the candidate stale
            other.refresh_from_db()
        return scoring(version, suites, generator)

    monkeypatch.setattr(pipeline, "score_version_on_suites", promote_the_sibling_first)
    # when the worker gates it
    verdict = pipeline.run_candidate_gate(candidate.pk)
    # then the gate is recorded and the candidate stays stale: the worker does not crash on it
    candidate.refresh_from_db()
    assert verdict == "pass" and candidate.status == "stale" and candidate.gate.baseline == base_version
    assert not candidate.promotion_requests.exists()
    assert candidate.training_job.events.filter(kind="gate_pass").exists()


# --- the tiny model -----------------------------------------------------------------------------------


@pytest.fixture
def generator_loads(monkeypatch):
    """Counts model loads: a version whose scores exist must not load its weights again."""
    from workers.engine.generation import Generator

    loads = []
    original = Generator.__init__

    def counting(self, model_dir, *args, **kwargs):
        loads.append(str(model_dir))
        original(self, model_dir, *args, **kwargs)

    monkeypatch.setattr(Generator, "__init__", counting)
    return loads


def test_a_candidate_unchanged_elsewhere_that_learned_its_skill_passes(gate_lineage):
    from workers.pipeline import run_candidate_gate

    # when
    verdict = run_candidate_gate(gate_lineage.clean.pk)
    # then
    clean = ModelVersion.objects.get(pk=gate_lineage.clean.pk)
    gate = clean.gate
    assert verdict == "pass" and clean.status == "awaiting_approval", gate.reasons
    rows = {row["name"]: row for row in gate.rows}
    assert set(rows) == {"echo", "tagging", "retention probes"}
    assert (rows["echo"]["before"], rows["echo"]["after"]) == (1.0, 1.0)
    assert rows["tagging"]["target"] and rows["tagging"]["after"] == 1.0 > rows["tagging"]["before"]
    assert not [f for f in gate.flipped if f["direction"] == "pass→fail"]
    assert clean.promotion_requests.get().requested_by.username == "alice"


def test_a_damaged_candidate_is_blocked_naming_the_skill_it_broke(gate_lineage, gate_models):
    from workers.pipeline import run_candidate_gate

    # when
    verdict = run_candidate_gate(gate_lineage.damaged.pk)
    # then
    damaged = ModelVersion.objects.get(pk=gate_lineage.damaged.pk)
    gate = damaged.gate
    assert verdict == "block" and damaged.status == "blocked"
    echo = next(row for row in gate.rows if row["name"] == "echo")
    assert echo["before"] == 1.0 and echo["after"] < 1.0 and echo["verdict"] == "block"
    assert any(reason.startswith("echo dropped from 100% to") for reason in gate.reasons), gate.reasons
    # and each regressed echo case shows the prompt, the parent's answer (the reference) and the new one
    drops = [f for f in gate.flipped if f["suite"].startswith("echo") and f["direction"] == "pass→fail"]
    assert len(drops) == round((1 - echo["after"]) * 20) > 0
    for flip in drops:
        i = ECHO_PROMPTS.index(flip["prompt"])
        assert flip["expected"] == flip["old_output"] == gate_models.echo_references[i]
        assert flip["new_output"] != flip["old_output"]
    assert not damaged.promotion_requests.exists()


def test_a_versions_scores_are_computed_once_and_reused(gate_lineage, artifacts, generator_loads):
    from workers.pipeline import run_candidate_gate

    def loaded():
        return [str(Path(path).relative_to(artifacts)) for path in generator_loads]

    # given the clean candidate was gated: the parent and the candidate were each loaded once
    run_candidate_gate(gate_lineage.clean.pk)
    assert loaded() == ["base/tiny", "versions/clean"]
    parent_runs = {r.pk: (r.suite_id, r.finished_at, r.score) for r in EvalRun.objects.filter(version=gate_lineage.parent)}
    assert len(parent_runs) == 3  # echo, tagging, probes
    generator_loads.clear()
    # when the damaged sibling is gated
    run_candidate_gate(gate_lineage.damaged.pk)
    # then only the damaged weights were loaded, and the parent's runs are the same rows, untouched
    assert loaded() == ["versions/damaged"]
    assert {r.pk: (r.suite_id, r.finished_at, r.score)
            for r in EvalRun.objects.filter(version=gate_lineage.parent)} == parent_runs
    # and gating it again computes nothing and reports the recorded verdict
    generator_loads.clear()
    assert run_candidate_gate(gate_lineage.damaged.pk) == "block"
    assert loaded() == []


@pytest.mark.parametrize(("probe_tolerance", "verdict"), [
    (None, "block"),  # the platform default (ACCRETE_PROBE_TOLERANCE=0): any forgotten probe blocks
    (0.1, "block"),  # a 15-point drop is beyond 10 points
    (0.2, "pass"),  # and within 20
])
def test_the_probe_tolerance_is_the_base_models_or_the_platform_default(make_candidate, base_version, legal_skills,
                                                                       settings, probe_tolerance, verdict):
    settings.ACCRETE_PROBE_TOLERANCE = 0.0
    base_model = base_version.base_model
    base_model.probe_tolerance = probe_tolerance
    base_model.save()
    suite = probe_suite(base_model)
    candidate = make_candidate(legal_skills["tagging"], status="evaluating")
    scores_grid((legal_skills["codes"], legal_skills["tagging"], suite),
                {base_version: (20, 0, 20), candidate: (20, 20, 17)})
    # when
    gate = gate_evaluate(candidate=candidate)
    # then
    probes = next(row for row in gate.rows if row["kind"] == "probes")
    assert probes["tolerance"] == (probe_tolerance or 0.0) and probes["delta"] == pytest.approx(-0.15)
    assert gate.verdict == verdict
    assert (gate.reasons == ["retention probes dropped from 100% to 85% (tolerance "
                             f"{probe_tolerance or 0:.0%})"]) == (verdict == "block")
