"""Score a model on eval items: greedy answers (generation.Generator) judged by scoring.score."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    from workers.engine.contract import scoring

    def scorer_of(item: EvalItem) -> tuple[str, dict | None]:
        return (item.scorer, item.scorer_options) if item.scorer else (scorer_kind, scorer_options)

    # A typo in the options should fail before minutes of generation, not after.
    for kind, options in {(kind, repr(options)): (kind, options) for kind, options in map(scorer_of, items)}.values():
        scoring.validate_options(kind, options)
    generator = model if isinstance(model, Generator) else Generator(model)
    outputs = generator.generate([item.prompt for item in items], max_new_tokens=max_new_tokens, batch_size=batch_size)
    results = []
    for item, output in zip(items, outputs, strict=True):
        kind, options = scorer_of(item)
        case = scoring.score(kind, output, item.reference, options)
        results.append(CaseOutput(item.case_id, output, case.passed, case.score, case.extracted, case.detail))
    return results
