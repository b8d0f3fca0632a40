"""The demo's closing statement and report say what the run showed against what it promised — never more."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper
from django.core.management.color import no_style

from demo.progress import Terminal
from demo.report import write_report
from demo.scenario import Step, outcome_lines, skill_add
from demo.settings import DEMO
from registry.reports import gate_table
from registry.selectors import forgetting_matrix
from registry.services.gates import gate_evaluate
from tests.fixtures.registry import promote, scores_grid, scores_record
from tests.fixtures.skills import skill_with_cases
from training.models import TrainingJob


def test_a_run_that_missed_the_promise_says_which_step_and_why(blocked_lineage, make_candidate, tmp_path):
    # given: skill 1 by SDFT promoted; the SFT candidate blocked for breaking policy-codes; the SDFT candidate of
    # skill 2 also blocked (here: it did not gain)
    codes, tagging, sdft1, sft = blocked_lineage
    sdft2 = make_candidate(tagging, parent=sdft1, status="evaluating")
    scores_grid((codes, tagging), {sdft2: (20, 0)})
    gate_evaluate(candidate=sdft2)
    # when
    lines = outcome_lines([Step("Skill 1 by SDFT", "promoted", sdft1),
                           Step("Skill 2 by an aggressive SFT", "blocked", sft),
                           Step("Skill 2 by SDFT", "promoted", sdft2)])
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
    promote(sdft1, requester=people["alice"], approver=people["bob"])
    lines = outcome_lines([Step("Skill 1 by SDFT", "promoted", sdft1)])
    assert lines == [f"Skill 1 by SDFT: v{sdft1.number} promoted — as promised."]


def test_the_demo_without_the_model_file_says_to_run_make_model(db, tmp_path, monkeypatch):
    missing = tmp_path / "smollm2.gguf"
    monkeypatch.setattr("demo.seeding.default_gguf", lambda: missing)
    out = io.StringIO()
    # when
    with pytest.raises(CommandError) as refused:
        call_command("demo", "--no-worker", no_color=True, stdout=out)
    # then
    assert str(refused.value) == f"{missing} is missing: run `make model` (python manage.py fetch_model)."
    assert out.getvalue().startswith("Accrete demo — one model, skill after skill, guarded by the gate")


def test_a_rerun_shows_the_gate_of_the_job_trained_before_and_keeps_production(people, base_version, make_candidate):
    codes = skill_with_cases(people["legal"], "policy-codes", tolerance=0.1)
    tagging = skill_with_cases(people["legal"], "tagging")
    sft = make_candidate(tagging, status="evaluating")
    scores_grid((codes, tagging), {base_version: (20, 0), sft: (5, 20)})
    gate_evaluate(candidate=sft)
    out = io.StringIO()
    term = Terminal(OutputWrapper(out), no_style())
    # when the demo reaches the step whose job an earlier run finished
    version = skill_add(term, tagging, "sdft", DEMO.sdft, people["alice"], people["bob"], step="2. Add tagging")
    # then it trains nothing, prints the gate table and leaves production where it was
    assert version == sft and TrainingJob.objects.count() == 1
    printed = out.getvalue()
    assert "trained before; showing its gate." in printed
    assert gate_table(sft.gate) in printed
    assert f"v{sft.number} is BLOCKED: production stays {base_version.label}." in printed


def test_the_demo_seeds_its_skills_through_the_audited_services_once(db):
    from audit.models import AuditEvent
    from demo import seeding

    term = Terminal(OutputWrapper(io.StringIO()), no_style())
    # when the demo seeds twice (a second `make demo` run)
    for _ in range(2):
        requester, owner = seeding.people_seed()
        skills = seeding.skills_seed(term, requester, owner=owner)
    # then each skill was created once by its owner and its demonstrations uploaded once, split and audited
    assert [s.slug for s in skills] == ["acme-units", "ticket-routing"]
    created = AuditEvent.objects.filter(action="skill.created")
    assert created.count() == 2 and {e.actor_label for e in created} == {owner.username}
    assert AuditEvent.objects.filter(action="demonstrations.uploaded").count() == 2
    assert all(s.demonstration_sets.get().eval_count == 20 for s in skills)
