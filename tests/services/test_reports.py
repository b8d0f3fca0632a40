"""The forgetting matrix and a gate are shaped once (registry.selectors) and formatted once for text
(registry.reports) and once for HTML (the registry partials): the demo's terminal and its HTML report show
the same numbers, and the report escapes whatever a team typed."""

import re

from demo.report import write_report
from registry.reports import gate_table, matrix_table
from registry.selectors import forgetting_matrix
from registry.services.gates import gate_evaluate
from tests.fixtures.registry import scores_grid
from tests.fixtures.skills import skill_with_cases

HOSTILE = "<script>alert(1)</script>"


def text_row(table: str, label: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(label))


def html_row(page: str, label: str) -> str:
    return next(row for row in page.split("<tr>") if f"<strong>{label}</strong>" in row)


def test_the_text_matrix_and_the_report_show_the_same_scores_and_deltas_of_a_blocked_candidate(blocked_lineage,
                                                                                              tmp_path):
    v3 = blocked_lineage[-1]
    matrix = forgetting_matrix()
    # when
    text = text_row(matrix_table(matrix), v3.label)
    page = write_report(matrix=matrix, out_dir=tmp_path).read_text()
    # then: policy-codes 100% → 25%, tagging 0% → 100%, in both
    assert re.findall(r"(\d+%) \(([^)]+)\)", text)[:2] == [("25%", "-75 pts"), ("100%", "+100 pts")]
    row = html_row(page.split('data-testid="matrix"')[1], v3.label)
    scores = re.findall(r'class="heat-score">([^<]+)<', row)
    deltas = re.findall(r'class="small delta-(?:up|down|zero)">([^<]+)<', row)
    assert list(zip(scores, deltas, strict=True))[:2] == [("25%", "-75 pts"), ("100%", "+100 pts")]
    assert text.rstrip().endswith("blocked") and "blocked" in row


def test_the_gate_table_and_the_report_show_the_same_rows(blocked_lineage, tmp_path):
    gate = blocked_lineage[-1].gate
    # when
    text = gate_table(gate)
    page = write_report(matrix=forgetting_matrix(), out_dir=tmp_path).read_text()
    # then
    gate_html = page.split(f"<h3>v{gate.candidate.number} vs v{gate.baseline.number}: BLOCK</h3>")[1]
    gate_html = gate_html.split("</section>")[0]
    for name, before, after, delta in (("policy-codes", "100%", "25%", "-75 pts"), ("tagging", "0%", "100%", "+100 pts")):
        assert re.search(rf"^{name} +{before} +{after} +{re.escape(delta)} ", text, re.MULTILINE), text
        row = next(r for r in gate_html.split("<tr") if f"<td>{name}" in r)
        assert re.findall(r"<td>(\d+%) <span", row)[:2] == [before, after]
        assert re.search(rf'<td class="delta-(up|down)">{re.escape(delta)}<', row)
    assert "policy-codes dropped from 100% to 25% (tolerance 10%)" in text
    assert "policy-codes dropped from 100% to 25% (tolerance 10%)" in gate_html


def test_the_report_escapes_a_hostile_skill_name(people, base_version, make_candidate, tmp_path):
    # given a skill whose slug is markup, which the gate blocks for dropping it
    hostile = skill_with_cases(people["legal"], HOSTILE, tolerance=0.1)
    tagging = skill_with_cases(people["legal"], "tagging")
    candidate = make_candidate(tagging, status="evaluating")
    scores_grid((hostile, tagging), {base_version: (20, 0), candidate: (5, 20)})
    assert gate_evaluate(candidate=candidate).verdict == "block"
    readiness = [(HOSTILE, {"teacher_passed": 1, "student_passed": 0, "n": 10, "verdict": "ready",
                            "message": f"{HOSTILE} is ready"})]
    # when
    page = write_report(matrix=forgetting_matrix(), out_dir=tmp_path, outcome=[f"{HOSTILE} blocked"],
                        readiness=readiness).read_text()
    # then: in the matrix header, the gate row and reason, the readiness table and the outcome, only as text
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
