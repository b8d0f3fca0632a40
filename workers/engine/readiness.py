"""Readiness check: can this model teach itself this skill? (SDFT can only teach what the teacher shows.)

On a sample of rows, the teacher (the demonstration in context, in the skill's style) and the
student (the prompt alone) answer greedily and are scored with the skill's scorer. We also report
how likely each finds the demonstration (mean per-token log-probability). When the teacher does not
clearly beat the student, SDFT has nothing to distil: try the other teacher style, or SFT.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from workers.engine.contract.prompts import student_messages, teacher_messages
from workers.engine.data import TrainRow
from workers.engine.generation import Generator

EXAMPLE_LIMIT = 2000  # characters per answer kept for the UI


@dataclass(frozen=True)
class ReadinessExample:
    prompt: list[dict]
    reference: str
    teacher_answer: str
    teacher_passed: bool
    student_answer: str
    student_passed: bool


@dataclass(frozen=True)
class ReadinessReport:
    n: int
    style: str
    teacher_passed: int
    student_passed: int
    teacher_logprob: float
    student_logprob: float
    verdict: str  # "ready" | "warning"
    message: str
    examples: list[ReadinessExample] = field(default_factory=list)


def readiness_check(
    model: str | Path | Generator,
    rows: list[TrainRow],
    style: str,
    scorer_kind: str,
    scorer_options: dict | None = None,
    n: int = 10,
    max_new_tokens: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
) -> ReadinessReport:
    from workers.engine.contract import scoring

    if not rows:
        raise ValueError("the readiness check needs at least one row")
    scoring.validate_options(scorer_kind, scorer_options)
    generator = model if isinstance(model, Generator) else Generator(model)
    # A seeded sample, not the first n: uploads are often sorted by topic.
    sample = random.Random(seed).sample(rows, min(n, len(rows)))
    if max_new_tokens is None:
        longest = max(len(generator.tokenizer(row.demonstration, add_special_tokens=False)["input_ids"]) for row in sample)
        max_new_tokens = math.ceil(1.25 * longest) + 8

    teacher_prompts = [teacher_messages(row.prompt, row.demonstration, style) for row in sample]
    student_prompts = [student_messages(row.prompt) for row in sample]
    # One pass over both sets: fuller batches, and a batch of decoding costs about what one row does.
    answers = generator.generate(teacher_prompts + student_prompts, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size)
    teacher_answers, student_answers = answers[: len(sample)], answers[len(sample) :]
    demonstrations = [row.demonstration for row in sample]
    teacher_logprobs = generator.mean_logprob(teacher_prompts, demonstrations, batch_size=batch_size)
    student_logprobs = generator.mean_logprob(student_prompts, demonstrations, batch_size=batch_size)

    examples = []
    for row, teacher_answer, student_answer in zip(sample, teacher_answers, student_answers, strict=True):
        reference = row.reference if row.reference is not None else row.demonstration
        examples.append(ReadinessExample(
            prompt=row.prompt,
            reference=reference,
            teacher_answer=teacher_answer[:EXAMPLE_LIMIT],
            teacher_passed=scoring.score(scorer_kind, teacher_answer, reference, scorer_options).passed,
            student_answer=student_answer[:EXAMPLE_LIMIT],
            student_passed=scoring.score(scorer_kind, student_answer, reference, scorer_options).passed,
        ))
    teacher_passed = sum(example.teacher_passed for example in examples)
    student_passed = sum(example.student_passed for example in examples)
    verdict, message = judge(teacher_passed, student_passed, len(examples), style)
    return ReadinessReport(
        n=len(examples),
        style=style,
        teacher_passed=teacher_passed,
        student_passed=student_passed,
        teacher_logprob=_mean(teacher_logprobs),
        student_logprob=_mean(student_logprobs),
        verdict=verdict,
        message=message,
        examples=examples,
    )


def judge(teacher_passed: int, student_passed: int, n: int, style: str) -> tuple[str, str]:
    """"ready" when the teacher beats the student by at least a fifth of the sample (and by 1)."""
    score_line = f"teacher {teacher_passed}/{n}, student {student_passed}/{n}"
    margin = max(1, math.ceil(0.2 * n))
    if teacher_passed - student_passed >= margin:
        return "ready", f"{score_line}: SDFT can teach this"
    other = "turn" if style == "inline" else "inline"
    if teacher_passed == 0:
        return "warning", (
            f"{score_line}: the model cannot use the demonstration in context; "
            f"try the {other!r} teacher style, a larger base model, or the SFT baseline"
        )
    if student_passed >= teacher_passed:
        return "warning", f"{score_line}: the model already does this without the demonstration; little to teach"
    return "warning", (
        f"{score_line}: the teacher is only slightly better than the student; "
        f"SDFT may gain little (try the {other!r} teacher style)"
    )


def _mean(values: list[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return sum(finite) / len(finite) if finite else float("nan")
