"""Score a model on eval items: greedy answers (generation.Generator) judged by scoring.score.

`evaluate_suites` scores several suites in one generation pass (the gate: every suite of a version, each
with its own budget and scorer); `evaluate` is the same for one suite."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from workers.engine.data import EvalItem
from workers.engine.generation import DEFAULT_MAX_NEW_TOKENS, Generator


@dataclass(frozen=True)
class CaseOutput:
    case_id: str
    output: str
    passed: bool
    score: float
    extracted: str | None
    detail: str


class SuiteToScore(NamedTuple):
    """One suite of a pass: its items, the suite's scorer (an item's own scorer wins) and its answer budget."""

    items: list[EvalItem]
    scorer_kind: str
    scorer_options: dict | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS


def evaluate_suites(
    model: str | Path | Generator, suites: list[SuiteToScore | tuple], batch_size: int = 8
) -> list[list[CaseOutput]]:
    """One list of CaseOutputs per suite, each in its items' order, from ONE generate call over the items
    of all suites (a row's answer is the one it gets alone with its own budget: Generator.generate). One
    pass instead of one per suite means full batches across suites and one sort by (budget, length), so a
    gate with many small suites does not pay for many half-empty batches."""
    from workers.engine.contract import scoring

    suites = [SuiteToScore(*suite) for suite in suites]

    def scorer_of(item: EvalItem, suite: SuiteToScore) -> tuple[str, dict | None]:
        return (item.scorer, item.scorer_options) if item.scorer else (suite.scorer_kind, suite.scorer_options)

    # A typo in the options should fail before minutes of generation, not after.
    kinds = {(kind, repr(options)): (kind, options)
             for suite in suites for kind, options in (scorer_of(item, suite) for item in suite.items)}
    for kind, options in kinds.values():
        scoring.validate_options(kind, options)
    prompts = [item.prompt for suite in suites for item in suite.items]
    budgets = [suite.max_new_tokens for suite in suites for _ in suite.items]
    if not prompts:
        return [[] for _ in suites]
    generator = model if isinstance(model, Generator) else Generator(model)
    outputs = iter(generator.generate(prompts, max_new_tokens=budgets, batch_size=batch_size))
    results = []
    for suite in suites:
        scored = []
        for item in suite.items:
            output = next(outputs)
            kind, options = scorer_of(item, suite)
            case = scoring.score(kind, output, item.reference, options)
            scored.append(CaseOutput(item.case_id, output, case.passed, case.score, case.extracted, case.detail))
        results.append(scored)
    return results


def evaluate(
    model: str | Path | Generator,
    items: list[EvalItem],
    scorer_kind: str,
    scorer_options: dict | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 8,
) -> list[CaseOutput]:
    """One CaseOutput per item, in the items' order. ``model`` is a model folder or a loaded Generator
    (the gate scores several suites with one load). An item's own scorer wins over ``scorer_kind``."""
    return evaluate_suites(model, [SuiteToScore(items, scorer_kind, scorer_options, max_new_tokens)],
                           batch_size=batch_size)[0]
