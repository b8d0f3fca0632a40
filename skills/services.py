"""Writes for skills: create a skill, and turn an uploaded file into an immutable demonstration set
plus a frozen eval suite. The browser previews (`demonstration_set_preview`) and saves on confirmation
(`demonstration_set_save`), each request reading the files once; the CLI calls both through
`demonstration_set_upload`."""

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from audit.services import audit_record
from config import dispatch
from config.errors import AccreteError
from skills.models import Demonstration, DemonstrationSet, EvalCase, EvalSuite, Skill
from skills.parsing import (
    ParsedRow,
    RowIndex,
    UploadLimits,
    ValidationReport,
    count_tokens_with,
    iter_rows,
    split_rows,
    validate_upload,
)
from skills.parsing import prompt_key as prompt_key  # rehearsal's import: the rule lives with the upload's
from teams.models import Role
from teams.permissions import require_role
from workers.engine.contract.scoring import validate_options

BATCH = 1000


class UploadRefused(AccreteError):
    """A validated upload that cannot be saved: its content was uploaded meanwhile, or the file changed."""


@dataclass(frozen=True)
class ValidatedUpload:
    """What saving a validated upload needs, small enough for a session (JSON via to_dict): the save reads
    the file only to stream its rows in, and checks they hash to `content_sha256`."""

    filename: str
    format: str
    content_sha256: str
    row_count: int
    seed: int
    # positions (file order) of the rows held out as eval cases: at most ACCRETE_EVAL_MAX_CASES; none with an eval file
    held_out: tuple[int, ...]
    train_count: int
    eval_count: int
    stats: dict
    eval_format: str | None = None
    eval_sha256: str | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "held_out": list(self.held_out)}

    @classmethod
    def from_dict(cls, data: dict) -> "ValidatedUpload":
        return cls(**{**data, "held_out": tuple(data["held_out"])})


@dataclass
class UploadOutcome:
    report: ValidationReport
    eval_report: ValidationReport | None = None
    demonstration_set: DemonstrationSet | None = None
    duplicate_of: DemonstrationSet | None = None
    train_count: int = 0
    eval_count: int = 0
    messages: list[str] = field(default_factory=list)
    validated: ValidatedUpload | None = None  # set when the files are clean and new

    @property
    def ok(self) -> bool:
        return self.report.ok and (self.eval_report is None or self.eval_report.ok) and self.duplicate_of is None


def skill_create_authorize(*, team, actor) -> None:
    """Raises RoleRequired unless `actor` may create skills in `team`: `skill_create` asks first, and so
    does the form's page before it shows a form its user could not submit."""
    require_role(actor, team, Role.SKILL_OWNER, action="create skills")


@transaction.atomic
def skill_create(*, team, slug: str, name: str, actor, description: str = "", scorer: str = "exact",
                 scorer_options: dict | None = None, teacher_style: str = "inline", tolerance: float = 0.0,
                 min_gain: float = 0.0, max_new_tokens: int = 64) -> Skill:
    skill_create_authorize(team=team, actor=actor)
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
    """Validate a file and, when it is clean and new, save it as the skill's next demonstration set: the
    two steps below in one call (the CLI's). `dry_run` stops after the first."""
    outcome = demonstration_set_preview(skill=skill, path=path, filename=filename, actor=actor, eval_path=eval_path,
                                        seed=seed, budget=budget)
    if outcome.ok and not dry_run:
        outcome.demonstration_set = _save(skill=skill, validated=outcome.validated, path=path, eval_path=eval_path,
                                          actor=actor)
    return outcome


def demonstration_set_preview(*, skill: Skill, path, filename: str, actor, eval_path=None, seed: int | None = None,
                              budget: TokenBudget | None = None) -> UploadOutcome:
    """Validate a file (and an eval file) and draw the split, saving nothing (the browser's review step).

    Reads each file once. A file with any problem is refused with every problem listed; content already
    uploaded is recognised. A clean, new file's outcome carries `validated`: what `demonstration_set_save`
    needs, so the save reads the file only to stream its rows in."""
    require_role(actor, skill.team, Role.CONTRIBUTOR, action=f"upload demonstrations for {skill.slug}")
    filename = Path(filename).name
    limits, count_tokens = upload_limits(budget=budget)
    rows = RowIndex(prompts=eval_path is not None)
    report = validate_upload(path, limits=limits, count_tokens=count_tokens, index=rows)
    outcome = UploadOutcome(report=report)
    if eval_path is not None:
        eval_limits, _ = upload_limits(budget=budget, min_rows=settings.ACCRETE_EVAL_MIN_CASES)
        outcome.eval_report = validate_upload(eval_path, limits=eval_limits, count_tokens=count_tokens,
                                              training=rows, training_name=filename)
    if not outcome.ok:
        return outcome
    outcome.duplicate_of = DemonstrationSet.objects.filter(skill=skill, content_sha256=report.content_sha256).first()
    if outcome.duplicate_of is not None:
        outcome.messages.append(_same_content(outcome.duplicate_of))
        return outcome

    # 28 bits: fits the integer column on every database.
    seed = seed if seed is not None else int(report.content_sha256[:7], 16)
    held_out = () if eval_path is not None else tuple(sorted(split_rows(
        rows.content_hashes(), seed=seed, eval_fraction=settings.ACCRETE_EVAL_FRACTION,
        min_eval=settings.ACCRETE_EVAL_MIN_CASES, max_eval=settings.ACCRETE_EVAL_MAX_CASES)))
    outcome.eval_count = outcome.eval_report.usable_row_count if eval_path is not None else len(held_out)
    outcome.train_count = len(rows) - len(held_out)
    outcome.validated = ValidatedUpload(
        filename=filename[:255], format=report.format, content_sha256=report.content_sha256, row_count=len(rows),
        seed=seed, held_out=held_out, train_count=outcome.train_count, eval_count=outcome.eval_count,
        stats={"length_unit": report.length_unit, "prompt_length": _stats(report.prompt_length),
               "demonstration_length": _stats(report.demonstration_length),
               "eval_source": "file" if eval_path is not None else "split"},
        eval_format=outcome.eval_report.format if eval_path is not None else None,
        eval_sha256=outcome.eval_report.content_sha256 if eval_path is not None else None,
    )
    return outcome


def demonstration_set_save(*, skill: Skill, validated: ValidatedUpload, path, actor, eval_path=None) -> DemonstrationSet:
    """Save a file `demonstration_set_preview` validated as the skill's next demonstration set, reading it
    (and the eval file) once. Refuses, saving nothing, when the content was uploaded meanwhile or the file
    changed since it was validated."""
    require_role(actor, skill.team, Role.CONTRIBUTOR, action=f"upload demonstrations for {skill.slug}")
    return _save(skill=skill, validated=validated, path=path, eval_path=eval_path, actor=actor)


def _save(*, skill: Skill, validated: ValidatedUpload, path, eval_path, actor) -> DemonstrationSet:
    if (eval_path is None) != (validated.eval_sha256 is None):
        raise ValueError("pass eval_path exactly when the upload was validated with an eval file")
    sha, eval_sha = hashlib.sha256(), hashlib.sha256()
    # The rows go in as they are read and the checksum is known only after the last one: a file that
    # changed since it was validated rolls the whole transaction back.
    with transaction.atomic():
        duplicate = DemonstrationSet.objects.filter(skill=skill, content_sha256=validated.content_sha256).first()
        if duplicate is not None:
            raise UploadRefused(_same_content(duplicate))
        number = (DemonstrationSet.objects.filter(skill=skill).aggregate(n=Max("version"))["n"] or 0) + 1
        dset = DemonstrationSet.objects.create(
            skill=skill, version=number, content_sha256=validated.content_sha256, format=validated.format,
            filename=validated.filename, row_count=validated.row_count, train_count=validated.train_count,
            eval_count=validated.eval_count, split_seed=validated.seed, created_by=actor, stats=validated.stats,
        )
        suite = EvalSuite.objects.create(
            kind=EvalSuite.Kind.SKILL, skill=skill, demonstration_set=dset,
            source=EvalSuite.Source.FILE if eval_path is not None else EvalSuite.Source.SPLIT,
            content_sha256=validated.eval_sha256 or validated.content_sha256,
        )
        held_out, train, cases = set(validated.held_out), [], []
        for index, row in enumerate(_rows_as_validated(path, validated.format, sha, validated.filename, "file")):
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
            for row in _rows_as_validated(eval_path, validated.eval_format, eval_sha, validated.filename, "eval file"):
                cases.append(_case(suite, row))
                if len(cases) >= BATCH:
                    EvalCase.objects.bulk_create(cases)
                    cases = []
        EvalCase.objects.bulk_create(cases)
        if sha.hexdigest() != validated.content_sha256:
            raise UploadRefused(_changed(validated.filename, "file"))
        if eval_path is not None and eval_sha.hexdigest() != validated.eval_sha256:
            raise UploadRefused(_changed(validated.filename, "eval file"))
        audit_record(actor=actor, action="demonstrations.uploaded", obj=dset, team=skill.team,
                     data={"skill": skill.slug, "version": number, "rows": validated.row_count,
                           "train": validated.train_count, "eval": validated.eval_count,
                           "sha256": validated.content_sha256, "seed": validated.seed})
    return dset


def _rows_as_validated(path, fmt: str, sha, filename: str, which: str) -> Iterator[ParsedRow]:
    try:
        yield from iter_rows(path, fmt, sha=sha)
    except ValueError as exc:  # a row that validated no longer reads: the file was changed
        raise UploadRefused(_changed(filename, which)) from exc


def _changed(filename: str, which: str) -> str:
    return f"{filename}: the {which} changed since it was validated; upload it again. Nothing was saved."


def _same_content(duplicate: DemonstrationSet) -> str:
    return (f"This file has the same content as {duplicate} (uploaded {duplicate.created_at:%Y-%m-%d %H:%M}); "
            "nothing new was saved.")


def readiness_request(*, demonstration_set: DemonstrationSet, actor) -> None:
    """Queue the readiness check of a set (teacher vs student on a sample) for an eval worker."""
    require_role(actor, demonstration_set.skill.team, Role.CONTRIBUTOR, action="run a readiness check")
    dispatch.send(dispatch.READINESS_CHECK, demonstration_set.pk)


def _case(suite: EvalSuite, row) -> EvalCase:
    return EvalCase(suite=suite, key=f"line-{row.line}", line=row.line, prompt=row.prompt, reference=row.reference)


def _stats(stats) -> dict | None:
    return None if stats is None else {"min": stats.min, "mean": round(stats.mean, 1), "max": stats.max}
