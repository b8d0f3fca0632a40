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


# --- hostile input: a refusal (exit 1 or CommandError) naming the line, never another exception --------

def run_refusable(*args) -> tuple[int, str, str]:
    """The command's exit code (1 for a CommandError, as manage.py would exit) and its output; any other
    exception fails the test."""
    from django.core.management.base import CommandError

    try:
        return run(*args)
    except CommandError as exc:
        return 1, "", str(exc)


def saved() -> tuple[int, int, int]:
    from skills.models import EvalCase

    return DemonstrationSet.objects.count(), Demonstration.objects.count(), EvalCase.objects.count()


def test_each_mutated_demo_file_is_refused_naming_its_line_or_else_saved(skill, tmp_path):
    from tests.fixtures.skills import hostile_corpus

    failures = []
    for index, mutant in enumerate(hostile_corpus()):
        path = tmp_path / f"{index}-{mutant.name}"
        path.write_bytes(mutant.content)
        before = saved()

        code, out, err = run_refusable(str(path), "--skill", skill.slug)

        if mutant.line is None:
            if code != 0 or saved()[0] != before[0] + 1:
                failures.append(f"{mutant}: exit {code}, {err[:200]}")
        elif code != 1 or f"line {mutant.line}" not in err:
            failures.append(f"{mutant}: exit {code}, {err[:200]}")
        elif saved() != before:
            failures.append(f"{mutant}: refused, but rows were saved")
    assert failures == []


def test_a_hostile_eval_file_is_refused_naming_its_line(skill, codes, tmp_path):
    from tests.fixtures.skills import hostile_corpus

    hostile = [m for m in hostile_corpus() if m.line is not None][:40]
    for index, mutant in enumerate(hostile):
        path = tmp_path / f"eval-{index}.jsonl"
        path.write_bytes(mutant.content)

        code, _, err = run_refusable(str(codes), "--skill", skill.slug, "--eval", str(path))

        assert (code, f"line {mutant.line}" in err) == (1, True), f"{mutant}: {err[:300]}"
    assert saved()[0] == 1


@pytest.mark.parametrize(("name", "problem"), [
    ("a\x01b.jsonl", "the file name has an invisible character (U+0001)"),
    ("\u202egpj.jsonl", "the file name has an invisible character (U+202E)"),
    ("tab\there.jsonl", "the file name has an invisible character (U+0009)"),
    (b"caf\xe9.jsonl", "the file name is not valid UTF-8 text"),
], ids=["control", "bidi override", "tab", "latin-1 bytes"])
def test_an_odd_file_name_is_refused_naming_the_field(skill, tmp_path, name, problem):
    import os

    rows = [{"prompt": f"Code for request {i}?", "demonstration": f"C-{i:02d}"} for i in range(30)]
    folder = os.fsencode(tmp_path)
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    with open(os.path.join(folder, raw), "w") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))

    code, _, err = run_refusable(os.fsdecode(os.path.join(folder, raw)), "--skill", skill.slug)

    assert code == 1
    assert f"field 'file name': {problem}" in err
    assert saved()[0] == 1


def test_a_long_but_legal_file_name_is_kept(skill, tmp_path):
    name = "n" * 249 + ".jsonl"  # 255 bytes: the most a Linux file name holds, and the column's width
    path = _write(tmp_path / name, [{"prompt": f"Code for request {i}?", "demonstration": f"C-{i:02d}"}
                                    for i in range(30)])

    code, _, _ = run(str(path), "--skill", skill.slug)

    assert code == 0 and DemonstrationSet.objects.get(skill=skill, version=2).filename == name


@pytest.mark.parametrize("slug", ["\x00", "caf\udce9", "a b", "x" * 5000, "../etc"])
def test_a_hostile_skill_slug_is_a_refusal(skill, codes, slug):
    code, _, err = run_refusable(str(codes), "--skill", slug)

    assert code == 1 and "No skill with slug" in err and err.encode("utf-8")


@pytest.mark.parametrize("seed", ["-1", str(2**31), "9" * 40])
def test_a_seed_out_of_range_is_a_refusal(skill, codes, seed):
    code, _, err = run_refusable(str(codes), "--skill", skill.slug, "--seed", seed)

    assert code == 1 and "seed" in err
    assert saved()[0] == 1


def test_a_missing_file_or_a_folder_is_a_refusal(skill, tmp_path):
    assert run_refusable(str(tmp_path / "nope.jsonl"), "--skill", skill.slug)[0] == 1
    assert run_refusable(str(tmp_path), "--skill", skill.slug)[0] == 1
