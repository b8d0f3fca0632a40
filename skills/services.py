"""Writes for skills: create a skill, and turn an uploaded file into an immutable demonstration set
plus a frozen eval suite. The browser upload and the CLI both call `demonstration_set_upload`."""

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from audit.services import audit_record
from config import dispatch
from skills.demonstration_formats import MAX_PROBLEMS, Problem
from skills.models import Demonstration, DemonstrationSet, EvalCase, EvalSuite, Skill
from skills.parsing import (
    UploadLimits,
    ValidationReport,
    count_tokens_with,
    iter_rows,
    split_rows,
    validate_upload,
)
from teams.models import Role
from teams.permissions import require_role
from workers.engine.contract.scoring import validate_options

BATCH = 1000


@dataclass
class UploadOutcome:
    report: ValidationReport
    eval_report: ValidationReport | None = None
    demonstration_set: DemonstrationSet | None = None
    duplicate_of: DemonstrationSet | None = None
    train_count: int = 0
    eval_count: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report.ok and (self.eval_report is None or self.eval_report.ok) and self.duplicate_of is None


@transaction.atomic
def skill_create(*, team, slug: str, name: str, actor, description: str = "", scorer: str = "exact",
                 scorer_options: dict | None = None, teacher_style: str = "inline", tolerance: float = 0.0,
                 min_gain: float = 0.0, max_new_tokens: int = 64) -> Skill:
    require_role(actor, team, Role.SKILL_OWNER, action="create skills")
    validate_options(scorer, scorer_options or {})
    skill = Skill(team=team, slug=slug, name=name, description=description, scorer=scorer,
                  scorer_options=scorer_options or {}, teacher_style=teacher_style, tolerance=tolerance,
                  min_gain=min_gain, max_new_tokens=max_new_tokens, created_by=actor)
    skill.full_clean()
    skill.save()
    audit_record(actor=actor, action="skill.created", obj=skill, team=team, data={"slug": slug, "scorer": scorer})
    return skill


@dataclass(frozen=True)
class TokenBudget:
    """The model an upload will train: its context window, and its tokenizer file when there is one
    (`registry.selectors.production_token_budget()` gives production's)."""

    context_length: int = 2048
    tokenizer_json: Path | None = None


def upload_limits(*, budget: TokenBudget | None = None, min_rows: int | None = None) -> tuple[UploadLimits, object]:
    """Limits from settings, in tokens of the model's tokenizer when it is there (else the parser's
    documented character bound)."""
    budget = budget or TokenBudget()
    context, count_tokens = budget.context_length or 2048, None
    if budget.tokenizer_json is not None and budget.tokenizer_json.exists():
        count_tokens = count_tokens_with(budget.tokenizer_json)
    # The teacher sees prompt + demonstration + template and then generates ~1.25x the demonstration,
    # all inside one context window.
    limits = UploadLimits(max_bytes=settings.ACCRETE_UPLOAD_MAX_BYTES, max_rows=settings.ACCRETE_UPLOAD_MAX_ROWS,
                          min_rows=min_rows or settings.ACCRETE_UPLOAD_MIN_ROWS,
                          max_prompt_tokens=context // 4, max_demonstration_tokens=context // 4)
    return limits, count_tokens


def demonstration_set_upload(*, skill: Skill, path, filename: str, actor, eval_path=None, seed: int | None = None,
                             dry_run: bool = False, budget: TokenBudget | None = None) -> UploadOutcome:
    """Validate a file and, when it is clean and new, save it as the skill's next demonstration set.

    A file with any problem saves nothing; re-uploading the same content is recognised and refused.
    `dry_run` validates and previews the split without saving (the browser's review step).
    """
    require_role(actor, skill.team, Role.CONTRIBUTOR, action=f"upload demonstrations for {skill.slug}")
    limits, count_tokens = upload_limits(budget=budget)
    report = validate_upload(path, limits=limits, count_tokens=count_tokens)
    outcome = UploadOutcome(report=report)
    if eval_path is not None:
        eval_limits, _ = upload_limits(budget=budget, min_rows=settings.ACCRETE_EVAL_MIN_CASES)
        outcome.eval_report = validate_upload(eval_path, limits=eval_limits, count_tokens=count_tokens)
    if not outcome.ok:
        return outcome
    outcome.duplicate_of = DemonstrationSet.objects.filter(skill=skill, content_sha256=report.content_sha256).first()
    if outcome.duplicate_of is not None:
        outcome.messages.append(
            f"This file has the same content as {outcome.duplicate_of} (uploaded "
            f"{outcome.duplicate_of.created_at:%Y-%m-%d %H:%M}); nothing new was saved."
        )
        return outcome

    # 28 bits: fits the integer column on every database.
    seed = seed if seed is not None else int(report.content_sha256[:7], 16)
    hashes, training_prompts = [], {}
    for row in iter_rows(path, report.format):
        hashes.append(row.content_hash)
        if eval_path is not None:
            training_prompts.setdefault(prompt_key(row.prompt), row.line)
    if eval_path is not None:
        leaks = _eval_rows_seen_in_training(training_prompts, eval_path, outcome.eval_report.format,
                                            train_name=Path(filename).name)
        if leaks:
            outcome.eval_report = replace(outcome.eval_report, ok=False, problems=leaks[:MAX_PROBLEMS],
                                          problems_omitted=max(len(leaks) - MAX_PROBLEMS, 0))
            return outcome
    held_out = set() if eval_path is not None else split_rows(
        hashes, seed=seed, eval_fraction=settings.ACCRETE_EVAL_FRACTION,
        min_eval=settings.ACCRETE_EVAL_MIN_CASES, max_eval=settings.ACCRETE_EVAL_MAX_CASES)
    outcome.eval_count = outcome.eval_report.usable_row_count if eval_path is not None else len(held_out)
    outcome.train_count = len(hashes) - len(held_out)
    if dry_run:
        return outcome

    with transaction.atomic():
        number = (DemonstrationSet.objects.filter(skill=skill).aggregate(n=Max("version"))["n"] or 0) + 1
        dset = DemonstrationSet.objects.create(
            skill=skill, version=number, content_sha256=report.content_sha256, format=report.format,
            filename=Path(filename).name[:255], row_count=len(hashes), train_count=outcome.train_count,
            eval_count=outcome.eval_count, split_seed=seed, created_by=actor,
            stats={"length_unit": report.length_unit,
                   "prompt_length": _stats(report.prompt_length), "demonstration_length": _stats(report.demonstration_length),
                   "eval_source": "file" if eval_path is not None else "split"},
        )
        suite = EvalSuite.objects.create(
            kind=EvalSuite.Kind.SKILL, skill=skill, demonstration_set=dset,
            source=EvalSuite.Source.FILE if eval_path is not None else EvalSuite.Source.SPLIT,
            content_sha256=outcome.eval_report.content_sha256 if eval_path is not None else report.content_sha256,
        )
        train, cases = [], []
        for index, row in enumerate(iter_rows(path, report.format)):
            if index in held_out:
                cases.append(_case(suite, row))
            else:
                train.append(Demonstration(demonstration_set=dset, line=row.line, prompt=row.prompt,
                                           demonstration=row.demonstration, reference=row.reference,
                                           metadata=row.metadata, content_hash=row.content_hash))
            if len(train) >= BATCH:
                Demonstration.objects.bulk_create(train)
                train = []
        Demonstration.objects.bulk_create(train)
        if eval_path is not None:
            cases = [_case(suite, row) for row in iter_rows(eval_path, outcome.eval_report.format)]
        EvalCase.objects.bulk_create(cases)
        audit_record(actor=actor, action="demonstrations.uploaded", obj=dset, team=skill.team,
                     data={"skill": skill.slug, "version": number, "rows": len(hashes), "train": outcome.train_count,
                           "eval": outcome.eval_count, "sha256": report.content_sha256, "seed": seed})
    outcome.demonstration_set = dset
    return outcome


def readiness_request(*, demonstration_set: DemonstrationSet, actor) -> None:
    """Queue the readiness check of a set (teacher vs student on a sample) for an eval worker."""
    require_role(actor, demonstration_set.skill.team, Role.CONTRIBUTOR, action="run a readiness check")
    dispatch.send(dispatch.READINESS_CHECK, demonstration_set.pk)


def prompt_key(prompt: list[dict]) -> str:
    """A prompt, compared the way a reader would: case and runs of whitespace ignored. The upload uses it to
    refuse eval rows that repeat training rows; rehearsal, to keep every eval case out of training."""
    return json.dumps([(m["role"], " ".join(m["content"].lower().split())) for m in prompt])


def _eval_rows_seen_in_training(training_prompts: dict[str, int], eval_path, eval_fmt: str, *,
                                train_name: str) -> list[Problem]:
    """Eval-file rows whose prompt is also a training row's (`training_prompts`: prompt key → its line):
    the model would be scored on what it trained on."""
    problems = []
    for row in iter_rows(eval_path, eval_fmt):
        line = training_prompts.get(prompt_key(row.prompt))
        if line is not None:
            problems.append(Problem(
                row.line, "prompt", f"line {row.line}, field 'prompt': this prompt is also line {line} of the "
                f"training file {train_name}",
                "remove it from one of the two files: a case the model trained on does not measure the skill"))
    return problems


def _case(suite: EvalSuite, row) -> EvalCase:
    return EvalCase(suite=suite, key=f"line-{row.line}", line=row.line, prompt=row.prompt, reference=row.reference)


def _stats(stats) -> dict | None:
    return None if stats is None else {"min": stats.min, "mean": round(stats.mean, 1), "max": stats.max}
