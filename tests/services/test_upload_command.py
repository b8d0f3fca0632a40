"""`manage.py upload_demonstrations`: the operator's upload, through the same services as the browser."""

import io
import json

import pytest
from django.core.management import call_command

from skills.models import Demonstration, DemonstrationSet


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def codes(tmp_path):
    return _write(tmp_path / "codes.jsonl",
                  [{"prompt": f"Code for request {i}?", "demonstration": f"C-{i:02d}"} for i in range(30)])


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("upload_demonstrations", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_a_dry_run_reports_the_split_and_saves_nothing(skill, codes):
    code, out, _ = run(str(codes), "--skill", skill.slug, "--dry-run")

    assert code == 0
    assert (f"{codes}: 30 rows (prompt_jsonl), valid (dry run: nothing saved); 24 for training, 6 held out for "
            "evaluation.") in out
    assert "prompt length (characters): min 19, mean 19.7, max 20; demonstration: min 4, mean 4.0, max 4" in out
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1


def test_it_saves_the_file_as_the_next_set(skill, codes):
    code, out, _ = run(str(codes), "--skill", skill.slug, "--seed", "3")

    dset = DemonstrationSet.objects.get(skill=skill, version=2)
    assert code == 0 and "saved as policy-codes demonstrations v2; 24 for training, 6 held out" in out
    assert (dset.split_seed, dset.filename) == (3, "codes.jsonl")
    assert Demonstration.objects.filter(demonstration_set=dset).count() == 24


def test_a_bad_file_lists_its_problems_and_exits_1(skill, tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": f"q{i}", "demonstration": f"a{i}"} for i in range(10)]
                 + [{"prompt": "q"}])

    code, _, err = run(str(bad), "--skill", skill.slug)

    assert code == 1
    assert f"{bad}: 1 problem(s); nothing was saved." in err
    assert "line 11, field 'demonstration': missing \"demonstration\"" in err
    assert DemonstrationSet.objects.filter(skill=skill).count() == 1


def test_an_eval_file_repeating_a_training_prompt_exits_1(skill, codes, tmp_path):
    eval_file = _write(tmp_path / "eval.jsonl", [{"prompt": f"Eval {i}?", "demonstration": f"E{i}"} for i in range(7)]
                       + [{"prompt": "code for request 4?", "demonstration": "C-04"}])

    code, _, err = run(str(codes), "--skill", skill.slug, "--eval", str(eval_file))

    assert code == 1
    assert "line 8, field 'prompt': this prompt is also line 5 of the training file codes.jsonl" in err


def test_the_same_content_twice_exits_1(skill, codes):
    run(str(codes), "--skill", skill.slug)

    code, out, _ = run(str(codes), "--skill", skill.slug)

    assert code == 1 and "same content as policy-codes demonstrations v2" in out
    assert DemonstrationSet.objects.filter(skill=skill).count() == 2
