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
    (the gate scores several suites with one load)."""
    from workers.engine import scoring

    # A typo in the options should fail before minutes of generation, not after.
    scoring.validate_options(scorer_kind, scorer_options)
    generator = model if isinstance(model, Generator) else Generator(model)
    outputs = generator.generate([item.prompt for item in items], max_new_tokens=max_new_tokens, batch_size=batch_size)
    results = []
    for item, output in zip(items, outputs, strict=True):
        case = scoring.score(scorer_kind, output, item.reference, scorer_options)
        results.append(CaseOutput(item.case_id, output, case.passed, case.score, case.extracted, case.detail))
    return results
