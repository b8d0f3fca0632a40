"""Which remedy the gate suggests when it blocks, and why: read from the blocked rows and the job's config."""

from registry.services.remedies import gate_remedy


def row(name, *, before, after, tolerance=0.1, kind="skill", target=False, verdict=None, lineage=None):
    blocked = before - after > tolerance + 1e-9 or (target and after <= before)
    return {"name": name, "kind": kind, "before": before, "after": after, "delta": after - before,
            "tolerance": tolerance, "target": target, "verdict": verdict or ("block" if blocked else "pass"),
            "lineage": lineage}


ADDED = row("tagging", before=0.0, after=0.6, tolerance=0.0, target=True)


def test_a_probe_drop_with_anchoring_on_doubles_the_anchors():
    rows = [ADDED, row("retention probes", kind="probes", before=0.9, after=0.6, tolerance=0.2)]
    # when the job anchored at the SDFT default
    remedy = gate_remedy(rows=rows, config={"method": "sdft", "anchor_ratio": None})
    # then
    assert remedy.config == {"anchor_ratio": 2.0}
    assert remedy.action == "Retrain with more retention anchoring (anchor_ratio 1 → 2)."
    assert remedy.reason.startswith("retention probes dropped 30 points (tolerance 20%): the update moved the model")
    assert "this job anchored at 1" in remedy.reason


def test_a_probe_drop_without_anchoring_turns_it_on():
    rows = [ADDED, row("retention probes", kind="probes", before=0.9, after=0.6, tolerance=0.2)]
    for config in ({"method": "sdft", "anchor_ratio": 0.0}, {"method": "sft", "anchor_ratio": None}):
        remedy = gate_remedy(rows=rows, config=config)
        assert remedy.config == {"anchor_ratio": 1.0}
        assert remedy.action == "Retrain by SDFT with retention anchoring on (anchor_ratio 0 → 1)."


def test_the_probes_below_the_base_are_a_probe_drop_too():
    lineage = {"version": 1, "kind": "base", "score": 1.0, "after": 0.65, "delta": -0.35, "budget": 0.3,
               "left": -0.05, "verdict": "block"}
    rows = [ADDED, row("retention probes", kind="probes", before=0.8, after=0.65, tolerance=0.2, verdict="block",
                       lineage=lineage)]
    remedy = gate_remedy(rows=rows, config={"method": "sdft", "anchor_ratio": 2.0})
    assert remedy.config == {"anchor_ratio": 4.0}
    assert remedy.reason.startswith("retention probes are 35 points below the base v1 (lineage budget 30%)")


def test_an_earlier_skill_drop_rehearses_that_skill_with_its_demonstrations():
    rows = [row("policy-codes", before=1.0, after=0.7), row("ticket-routing", before=0.5, after=0.5), ADDED]
    # when
    remedy = gate_remedy(rows=rows, config={"method": "sdft", "anchor_ratio": 1.0, "rehearsal": "anchor"})
    # then anchoring stays as it was and policy-codes is rehearsed as SDFT rows
    assert remedy.config == {"anchor_ratio": 1.0, "rehearsal": "demonstration", "rehearsal_skills": ["policy-codes"]}
    assert remedy.action == ("Retrain with retention anchoring (anchor_ratio 1); "
                             "rehearse policy-codes (rehearsal=demonstration).")
    assert remedy.reason.startswith("policy-codes dropped 30 points (tolerance 10%): rehearsing its training rows")


def test_a_skill_that_did_not_gain_enough_is_not_a_retention_problem():
    rows = [row("policy-codes", before=1.0, after=1.0), row("tagging", before=0.1, after=0.1, target=True)]
    remedy = gate_remedy(rows=rows, config={"method": "sdft", "anchor_ratio": 1.0})
    assert not remedy.retrains_with_retention and remedy.config == {}
    assert "no retention remedy applies" in remedy.action and "more steps" in remedy.action
    assert remedy.reason.startswith("Only tagging, the skill being added, fell short (10% → 10%)")


def test_a_passing_gate_needs_no_remedy():
    assert gate_remedy(rows=[row("policy-codes", before=1.0, after=0.95), ADDED], config={}) is None


def test_a_job_from_before_anchoring_counts_as_not_anchored():
    rows = [ADDED, row("retention probes", kind="probes", before=0.9, after=0.6, tolerance=0.2)]
    remedy = gate_remedy(rows=rows, config={"method": "sdft", "max_steps": 32})
    assert remedy.config == {"anchor_ratio": 1.0} and "this job did not anchor" in remedy.reason
