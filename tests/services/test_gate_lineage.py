"""What the gate adds to its per-step rule: the paired interval of each delta, a warning when a suite is
too small for its tolerance, and the lineage budget (earlier skills against their best production score,
the probes against the base model). Scores are written by hand; no model."""

import io
import json

import pytest
from django.core.management import call_command

from registry.reports import gate_table
from registry.services.gates import gate_evaluate
from tests.fixtures.registry import probe_suite, promote, scores_grid
from tests.fixtures.skills import skill_with_cases


def promoted(version, people):
    gate = gate_evaluate(candidate=version)
    assert gate.verdict == "pass", gate.reasons
    return promote(version, requester=people["alice"], approver=people["bob"])


def row_named(gate, name):
    return next(row for row in gate.rows if row["name"] == name)


# --- uncertainty ------------------------------------------------------------------------------------


def test_each_row_carries_the_paired_interval_of_its_delta(people, base_version, make_candidate):
    codes = skill_with_cases(people["legal"], "policy-codes", tolerance=0.1)
    tagging = skill_with_cases(people["legal"], "tagging")
    candidate = make_candidate(tagging, status="evaluating")
    # when the candidate flips 3 of policy-codes' 20 cases pass→fail and gains all of tagging
    scores_grid((codes, tagging), {base_version: (20, 0), candidate: (17, 20)})
    gate = gate_evaluate(candidate=candidate)
    # then: differences 17 × 0 and 3 × −1 → mean −0.15, s = √(2.55/19), half-width t(0.975, 19)·s/√20 = 0.17146
    codes_row = row_named(gate, "policy-codes")
    assert codes_row["n"] == 20 and codes_row["delta"] == pytest.approx(-0.15)
    assert codes_row["interval"] == [pytest.approx(-0.32146, abs=1e-5), pytest.approx(0.02146, abs=1e-5)]
    # and every case flipped the same way on tagging: a zero-width interval at +100 points
    assert row_named(gate, "tagging")["interval"] == [1.0, 1.0]
    # the verdict still reads the point estimate: −15 points is beyond the 10-point tolerance
    assert gate.verdict == "block" and codes_row["verdict"] == "block"


def test_a_suite_too_small_for_its_tolerance_is_flagged_and_the_verdict_unchanged(people, base_version,
                                                                                  make_candidate):
    # given policy-codes has 10 eval cases and tolerates a 10-point drop; tagging has 20 and tolerates 0
    codes = skill_with_cases(people["legal"], "policy-codes", cases=10, tolerance=0.1)
    tagging = skill_with_cases(people["legal"], "tagging")
    candidate = make_candidate(tagging, status="evaluating")
    scores_grid((codes, tagging), {base_version: (10, 0), candidate: (9, 20)})
    # when
    gate = gate_evaluate(candidate=candidate)
    # then
    assert row_named(gate, "policy-codes")["warning"] == (
        "10 cases cannot resolve a 10-point tolerance: one flipped case is a 10-point swing; "
        "add eval cases (≥ 20)")
    assert row_named(gate, "tagging")["warning"] is None  # tolerance 0: any drop blocks, whatever the size
    assert gate.verdict == "pass"  # one flipped case is exactly the tolerance, as before
    assert "warning: policy-codes: 10 cases cannot resolve a 10-point tolerance" in gate_table(gate)


# --- the lineage budget ---------------------------------------------------------------------------


@pytest.fixture
def two_step_probe_lineage(people, base_version, make_candidate):
    """v1 the base (probes 20/20), v2 +policy-codes in production with probes 16/20: 20 points down, exactly
    the per-step probe tolerance of this lineage (and within the default lineage budget of 30)."""
    base_model = base_version.base_model
    base_model.probe_tolerance = 0.2
    base_model.save()
    skills = (skill_with_cases(people["legal"], "policy-codes", tolerance=0.1),
              skill_with_cases(people["legal"], "tagging"), probe_suite(base_model))
    v2 = make_candidate(skills[0], status="evaluating")
    scores_grid(skills, {base_version: (0, 0, 20), v2: (20, 0, 16)})
    return skills, promoted(v2, people)


def test_the_probes_are_held_to_the_base_model_across_the_lineage(two_step_probe_lineage, make_candidate, settings):
    skills, v2 = two_step_probe_lineage
    assert settings.ACCRETE_LINEAGE_PROBE_TOLERANCE == 0.3  # the default
    # when two candidates of tagging trained from v2 lose 3 and 1 more probes (within 20 points of v2)
    beyond = make_candidate(skills[1], parent=v2, status="evaluating")
    within = make_candidate(skills[1], parent=v2, status="evaluating")
    scores_grid(skills, {beyond: (20, 20, 13), within: (20, 20, 15)})
    beyond_gate, within_gate = gate_evaluate(candidate=beyond), gate_evaluate(candidate=within)
    # then the one 35 points below the base is blocked, naming the base; the per-step row alone would pass
    beyond.refresh_from_db()
    assert beyond_gate.verdict == "block" and beyond.status == "blocked"
    assert beyond_gate.reasons == ["retention probes are 35 points below the base v1 (lineage budget 30%)"]
    probes = row_named(beyond_gate, "retention probes")
    assert probes["delta"] == pytest.approx(-0.15) and probes["tolerance"] == 0.2 and probes["verdict"] == "block"
    assert probes["lineage"] == {"version": 1, "kind": "base", "score": 1.0, "after": 0.65,
                                 "delta": pytest.approx(-0.35), "budget": 0.3, "left": pytest.approx(-0.05),
                                 "verdict": "block"}
    # and the one 25 points below passes, with 5 points of the budget left
    assert within_gate.verdict == "pass", within_gate.reasons
    assert row_named(within_gate, "retention probes")["lineage"]["left"] == pytest.approx(0.05)
    # and policy-codes, in production since v2, is held to its best there
    assert row_named(within_gate, "policy-codes")["lineage"]["version"] == v2.number


def test_an_earlier_skill_is_held_to_its_best_score_since_it_entered_production(people, base_version,
                                                                                make_candidate, settings):
    settings.ACCRETE_LINEAGE_SKILL_TOLERANCE = 0.15
    skills = (skill_with_cases(people["legal"], "policy-codes", tolerance=0.1),
              skill_with_cases(people["legal"], "tagging"), skill_with_cases(people["legal"], "routing"))
    # given policy-codes reached 100% in v2 and lost 10 points (its whole per-step tolerance) in v3
    v2 = make_candidate(skills[0], status="evaluating")
    scores_grid(skills, {base_version: (0, 0, 0), v2: (20, 0, 0)})
    promoted(v2, people)
    v3 = make_candidate(skills[1], parent=v2, status="evaluating")
    scores_grid(skills, {v3: (18, 20, 0)})
    promoted(v3, people)
    # when two candidates of routing from v3 lose 10 and 5 more points of policy-codes
    beyond = make_candidate(skills[2], parent=v3, status="evaluating")
    within = make_candidate(skills[2], parent=v3, status="evaluating")
    scores_grid(skills, {beyond: (16, 20, 20), within: (17, 20, 20)})
    beyond_gate, within_gate = gate_evaluate(candidate=beyond), gate_evaluate(candidate=within)
    # then 20 points below its best (v2, not the parent v3) is beyond the 15-point budget
    assert beyond_gate.verdict == "block"
    assert beyond_gate.reasons == ["policy-codes is 20 points below its best, v2 (lineage budget 15%)"]
    codes = row_named(beyond_gate, "policy-codes")
    assert codes["delta"] == pytest.approx(-0.1) and codes["lineage"]["version"] == v2.number
    # and 15 points below is exactly the budget
    assert within_gate.verdict == "pass", within_gate.reasons
    assert row_named(within_gate, "policy-codes")["lineage"]["delta"] == pytest.approx(-0.15)
    # skills that never reached production, and the skill being added, have no lineage reference
    assert row_named(beyond_gate, "routing")["lineage"] is None
    assert row_named(beyond_gate, "tagging")["lineage"]["version"] == v3.number


def test_the_gate_table_and_json_show_the_lineage_reference_and_the_remedy(two_step_probe_lineage,
                                                                         make_candidate):
    skills, v2 = two_step_probe_lineage
    beyond = make_candidate(skills[1], parent=v2, status="evaluating")
    beyond.training_job.config = {"method": "sdft", "anchor_ratio": 1.0}
    beyond.training_job.save()
    scores_grid(skills, {beyond: (20, 20, 13)})
    gate = gate_evaluate(candidate=beyond)
    # when
    table = gate_table(gate)
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("gate", str(beyond.number), "--json", stdout=out)
    report = json.loads(out.getvalue())
    # then
    assert "retention probes: 100% at base v1 → 65% now, -35 pts (budget 30%, 5 pts over): block" in table
    assert "policy-codes: 100% at best v2 → 100% now, +0 pts (budget 20%, 20 pts left): pass" in table
    assert "  remedy: Retrain with more retention anchoring (anchor_ratio 1 → 2)." in table
    assert report["rows"][-1]["lineage"]["version"] == 1
    assert report["remedy"]["config"] == {"anchor_ratio": 2.0}
