"""The gate's one pass (evaluate_suites: every suite of a version in one generate call, each with its own budget
and scorer) answers exactly what the plain path answers (each suite alone through evaluate), on the tiny model."""

import pytest

from workers.engine.data import EvalItem
from workers.engine.evaluation import SuiteToScore, evaluate, evaluate_suites
from workers.engine.generation import Generator


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    return Generator(tiny_model_dir, device="cpu")


def _prompt(i: int, words: int) -> list[dict]:
    return [{"role": "user", "content": " ".join(["ledger"] * words) + f" entry {i}: what is it?"}]


def _alone(generator, prompt, budget) -> str:
    return generator.generate([prompt], max_new_tokens=budget, batch_size=1)[0]


@pytest.fixture(scope="module")
def suites(generator) -> list[SuiteToScore]:
    """Five suites as a gate meets them: two sharing a budget (their rows share batches), a short one, a long one
    (the probes' 24 tokens), prompts from 1 to 60 words, references that some answers match, an item with its
    own scorer, an empty suite. Every suite is long enough for the pass to hold several batches of 16."""
    codes = [(_prompt(i, 1 + 7 * i), 3) for i in range(12)]
    # Half the "codes" references are each prompt's answer generated alone: those cases pass only if the pass
    # answers exactly that.
    code_items = [EvalItem(f"codes-{i}", p, _alone(generator, p, b) if i % 2 == 0 else "never said")
                  for i, (p, b) in enumerate(codes)]
    tag_prompts = [_prompt(100 + i, 60 - 6 * i) for i in range(10)]
    tags = [EvalItem(f"tags-{i}", p, _alone(generator, p, 3).split()[0] if i % 3 == 0 else "never said")
            for i, p in enumerate(tag_prompts)]
    regex = [EvalItem(f"regex-{i}", _prompt(200 + i, 3 + 5 * i), r"^\S+\s\S+") for i in range(8)]
    regex.append(EvalItem("regex-own", _prompt(299, 9), "never said", scorer="contains"))
    # The same prompts as "codes", with the probes' budget: a row's budget is its own, not its batch's.
    long = [EvalItem(f"long-{i}", p, "never said") for i, (p, _) in enumerate(codes[:7])]
    return [SuiteToScore(code_items, "exact", None, 3), SuiteToScore(tags, "contains", None, 3),
            SuiteToScore(regex, "regex", None, 8), SuiteToScore(long, "exact", None, 24),
            SuiteToScore([], "exact", None, 5)]


def test_one_pass_answers_exactly_what_each_suite_alone_answers(generator, suites):
    # when every suite is scored in one pass, and each alone (the plain path)
    one_pass = evaluate_suites(generator, suites, batch_size=16)
    plain = [evaluate(generator, suite.items, suite.scorer_kind, suite.scorer_options,
                      max_new_tokens=suite.max_new_tokens, batch_size=16) for suite in suites]
    # then the answers (strings) and their scores are the same, suite by suite, case by case
    assert [[case.output for case in suite] for suite in one_pass] == [[case.output for case in suite]
                                                                       for suite in plain]
    assert one_pass == plain
    # and the comparison means something: answers are not empty, some cases pass and some fail
    codes, tags, regex, long, empty = one_pass
    assert all(case.output for suite in one_pass for case in suite) and empty == []
    assert [case.passed for case in codes] == [i % 2 == 0 for i in range(12)]
    assert [case.passed for case in tags] == [i % 3 == 0 for i in range(10)]
    assert regex[-1].detail and not regex[-1].passed  # its own scorer, "contains", not the suite's regex
    # and each row kept its own budget in a pass that mixed budgets
    for short, full in zip(codes, long, strict=False):
        assert full.output.startswith(short.output) and len(full.output) > len(short.output)
        assert len(generator.tokenizer(full.output, add_special_tokens=False)["input_ids"]) > 3


def test_one_pass_is_one_generate_call_with_each_rows_budget(generator, suites, monkeypatch):
    calls = []
    original = generator.generate

    def recording(prompts, max_new_tokens, batch_size):
        calls.append((len(prompts), list(max_new_tokens), batch_size))
        return original(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)

    monkeypatch.setattr(generator, "generate", recording)
    evaluate_suites(generator, suites, batch_size=16)
    assert calls == [(12 + 10 + 9 + 7, [3] * 22 + [8] * 9 + [24] * 7, 16)]


def test_greedy_scoring_is_deterministic(generator, suites):
    first = evaluate_suites(generator, suites, batch_size=16)
    assert evaluate_suites(generator, suites, batch_size=16) == first
    assert evaluate_suites(generator, list(reversed(suites)), batch_size=16) == list(reversed(first))


def test_one_pass_refuses_bad_options_in_any_suite_before_loading_the_model(tmp_path):
    good = SuiteToScore([EvalItem("c1", "Code?", "x")], "exact", None, 4)
    bad = SuiteToScore([EvalItem("c2", "Code?", "x")], "regex", {"patern": "x"}, 4)
    # tmp_path holds no model: loading it would fail with another error
    with pytest.raises(ValueError, match="unknown option 'patern'"):
        evaluate_suites(tmp_path, [good, bad])
