import pytest

from workers.engine.data import EvalItem, TrainRow
from workers.engine.evaluation import evaluate
from workers.engine.generation import Generator
from workers.engine.readiness import judge, readiness_check


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    return Generator(tiny_model_dir, device="cpu")


def test_evaluate_scores_every_item_in_order(generator):
    # A reference-as-pattern ".*" matches any answer; "zzzz-not-said" matches none.
    items = [EvalItem("c1", "Code?", ".*"), EvalItem("c2", "Code?", ".*")]
    outputs = evaluate(generator, items, "regex", None, max_new_tokens=6)
    assert [o.case_id for o in outputs] == ["c1", "c2"]
    assert outputs[0].output == outputs[1].output and all(o.passed for o in outputs)
    contains = evaluate(generator, [EvalItem("c3", "Code?", "zzzz-not-said")], "contains", None, max_new_tokens=6)
    assert contains[0].passed is False and contains[0].score == 0.0 and contains[0].detail


def test_evaluate_refuses_bad_scorer_options_before_generating(tiny_model_dir):
    with pytest.raises(ValueError, match="unknown option 'patern'"):
        evaluate(tiny_model_dir, [EvalItem("c1", "Code?", "x")], "regex", {"patern": "x"})


def test_readiness_compares_teacher_and_student_on_a_sample(generator):
    rows = [TrainRow(prompt=f"What is code {i}?", demonstration=f"Code {i} is K-{i}.", reference=".*") for i in range(6)]
    report = readiness_check(generator, rows, "turn", "regex", None, n=4, max_new_tokens=6)
    assert report.n == 4 and len(report.examples) == 4
    # Every answer matches ".*": the teacher cannot beat the student, so it must not say "ready".
    assert (report.teacher_passed, report.student_passed, report.verdict) == (4, 4, "warning")
    assert report.message.startswith("teacher 4/4, student 4/4")
    assert report.teacher_logprob < 0 and report.student_logprob < 0
    assert {e.reference for e in report.examples} == {".*"}, "a row's own reference wins over its demonstration"


@pytest.mark.parametrize(
    "teacher, student, verdict, fragment",
    [
        (10, 0, "ready", "teacher 10/10, student 0/10: SDFT can teach this"),
        (3, 1, "ready", "SDFT can teach this"),
        (0, 0, "warning", "cannot use the demonstration in context; try the 'turn' teacher style"),
        (6, 6, "warning", "already does this without the demonstration"),
        (5, 4, "warning", "only slightly better"),
    ],
)
def test_the_verdict_needs_the_teacher_to_clearly_beat_the_student(teacher, student, verdict, fragment):
    got_verdict, message = judge(teacher, student, 10, "inline")
    assert got_verdict == verdict and fragment in message
