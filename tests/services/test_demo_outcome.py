"""The demo's closing statement and report say what the run showed against what it promised — never more."""

import io

from demo.management.commands.demo import Command
from demo.report import write_report
from registry.selectors import forgetting_matrix
from registry.services.gates import gate_evaluate
from registry.services.versions import version_promote
from tests.services.conftest import scores_grid, scores_record, skill_with_cases


def test_a_run_that_missed_the_promise_says_which_step_and_why(people, base_version, make_candidate, tmp_path):
    codes = skill_with_cases(people["legal"], "policy-codes", tolerance=0.1)
    tagging = skill_with_cases(people["legal"], "tagging")
    # given: skill 1 by SDFT promoted; the SFT candidate blocked for breaking policy-codes; the SDFT candidate of
    # skill 2 also blocked (here: it did not gain)
    sdft1 = make_candidate(codes, status="evaluating")
    scores_grid((codes, tagging), {base_version: (0, 0), sdft1: (20, 0)})
    assert gate_evaluate(candidate=sdft1).verdict == "pass"
    version_promote(version=sdft1, actor=people["bob"])
    sft = make_candidate(tagging, parent=sdft1, status="evaluating")
    sdft2 = make_candidate(tagging, parent=sdft1, status="evaluating")
    scores_grid((codes, tagging), {sft: (5, 20), sdft2: (20, 0)})
    gate_evaluate(candidate=sft)
    gate_evaluate(candidate=sdft2)
    command = Command(stdout=io.StringIO())
    # when
    lines = command.outcome([("Skill 1 by SDFT", "promoted", sdft1), ("Skill 2 by an aggressive SFT", "blocked", sft),
                             ("Skill 2 by SDFT", "promoted", sdft2)])
    # then
    assert lines[0] == f"Skill 1 by SDFT: v{sdft1.number} promoted — as promised."
    assert lines[1].startswith(f"Skill 2 by an aggressive SFT: v{sft.number} blocked (policy-codes dropped from 100% "
                               "to 25% (tolerance 10%))") and lines[1].endswith("— as promised.")
    assert lines[2].startswith(f"Skill 2 by SDFT: v{sdft2.number} blocked (tagging (the skill being added) did not "
                               "improve") and lines[2].endswith("NOT as promised (promised: promoted).")
    assert lines[3].startswith("This run did not show the whole promise")
    # and the report carries the same sentences and the readiness table
    readiness = [("tagging", {"teacher_passed": 9, "student_passed": 0, "n": 10, "verdict": "ready",
                              "message": "teacher 9/10, student 0/10: SDFT can teach this"})]
    page = write_report(matrix=forgetting_matrix(), out_dir=tmp_path, outcome=lines, readiness=readiness).read_text()
    assert "<h2>Outcome</h2>" in page and "NOT as promised (promised: promoted)." in page
    assert "<td>tagging</td><td>9/10</td><td>0/10</td><td>ready</td>" in page


def test_a_run_that_showed_the_promise_adds_no_excuse(people, base_version, make_candidate):
    codes = skill_with_cases(people["legal"], "policy-codes")
    sdft1 = make_candidate(codes, status="evaluating")
    scores_record(base_version, codes, passing=0)
    scores_record(sdft1, codes, passing=20)
    gate_evaluate(candidate=sdft1)
    version_promote(version=sdft1, actor=people["bob"])
    lines = Command(stdout=io.StringIO()).outcome([("Skill 1 by SDFT", "promoted", sdft1)])
    assert lines == [f"Skill 1 by SDFT: v{sdft1.number} promoted — as promised."]
