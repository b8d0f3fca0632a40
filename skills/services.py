"""Writes for skills: create a skill, edit its gate rules (four eyes for what loosens them), archive and
reactivate it, and turn an uploaded file into an immutable demonstration set plus a frozen eval suite. The
browser previews (`demonstration_set_preview`) and saves on confirmation (`demonstration_set_save`), each
request reading the files once; the CLI calls both through `demonstration_set_upload`."""

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import audit_record
from config import dispatch
from config.errors import AccreteError
from skills.models import Demonstration, DemonstrationSet, EvalCase, EvalSuite, Skill, SkillChange
from skills.parsing import (
    ParsedRow,
    RowIndex,
    UploadLimits,
    ValidationReport,
    count_tokens_with,
    file_label,
    iter_rows,
    split_rows,
    validate_upload,
)
from skills.parsing import prompt_key as prompt_key  # rehearsal's import: the rule lives with the upload's
from teams.models import Role
from teams.permissions import is_machine, require_role, same_person
from workers.engine.contract.scoring import validate_options

BATCH = 1000
SEED_RANGE = (0, 2**31 - 1)  # DemonstrationSet.split_seed is an integer column on every database


class UploadRefused(AccreteError):
    """A validated upload that cannot be saved: its content was uploaded meanwhile, or the file changed."""


class SkillEditRefused(AccreteError):
    """An edit, a decision on a pending change, an archive or a reactivation the skill's state does not allow."""


class SelfApprovalRefused(SkillEditRefused):
    """The person who asked to loosen a skill's rules cannot also approve it (four eyes)."""


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


# --- editing a skill's rules: tightening applies at once, loosening waits for a second skill owner ---------

EDITABLE = ("description", "scorer", "scorer_options", "tolerance", "min_gain")
S = Skill.Status
C = SkillChange.Status


@dataclass(frozen=True)
class SkillUpdate:
    """What `skill_update` did: the fields it changed at once ({name: {"before", "after"}}), and the change
    left waiting for another skill owner's approval, if any."""

    applied: dict
    pending: SkillChange | None = None


def _loosens(name: str, before, after) -> bool:
    if name == "tolerance":
        return after > before
    if name == "min_gain":
        return after < before
    # Another scorer, or other options, can pass what the old one failed; and the next gate compares a
    # candidate scored the new way with a parent scored the old way. Either way a second owner looks first.
    return name in ("scorer", "scorer_options")


def skill_edit_authorize(*, skill: Skill, actor) -> None:
    """Raises RoleRequired unless `actor` may edit, archive or reactivate `skill`, and decide on its pending
    changes: a skill owner of its team (the edit page asks before it shows a form)."""
    require_role(actor, skill.team, Role.SKILL_OWNER, action=f"change the skill {skill.slug}")


def skill_update(*, skill: Skill, actor, comment: str = "", description: str | None = None,
                 scorer: str | None = None, scorer_options: dict | None = None, tolerance: float | None = None,
                 min_gain: float | None = None) -> SkillUpdate:
    """Change a skill's description and gate rules (None: unchanged). A description, a smaller tolerance or
    a larger minimum gain applies at once; a larger tolerance, a smaller minimum gain or another scorer
    (kind or options) becomes a pending SkillChange that another skill owner approves. Each is an audit
    event with before and after. Raises ValueError (scorer options), ValidationError (a value out of range)
    or SkillEditRefused (a loosening while another waits, or with no person to ask for it)."""
    skill_edit_authorize(skill=skill, actor=actor)
    given = {"description": description, "scorer": scorer, "scorer_options": scorer_options,
             "tolerance": tolerance, "min_gain": min_gain}
    with transaction.atomic():
        current = Skill.objects.select_for_update().get(pk=skill.pk)
        before = {name: getattr(current, name) for name in EDITABLE}
        wanted = {name: value for name, value in given.items() if value is not None and value != before[name]}
        if not wanted:
            return SkillUpdate(applied={})
        after = {**before, **wanted}
        validate_options(after["scorer"], after["scorer_options"])
        for name, value in wanted.items():
            setattr(current, name, value)
        current.full_clean()  # ranges and constraints, before anything is written
        changes = {name: {"before": before[name], "after": value} for name, value in wanted.items()}
        if "scorer" in changes or "scorer_options" in changes:  # they are read together: approved together
            changes.update({name: {"before": before[name], "after": after[name]} for name in ("scorer", "scorer_options")})
        loosening = {name: change for name, change in changes.items() if _loosens(name, **change)}
        applied = {name: change for name, change in changes.items() if name not in loosening}
        pending = None
        if loosening:
            if actor is None:
                raise SkillEditRefused(f"Loosening {skill.slug}'s rules needs a person to ask and another to approve.")
            waiting = SkillChange.objects.filter(skill=current, status=C.PENDING).select_related("requested_by").first()
            if waiting is not None:
                raise SkillEditRefused(
                    f"A change to {skill.slug} ({', '.join(waiting.fields)}) asked for by "
                    f"{waiting.requested_by.get_username()} is waiting for approval: a skill owner approves or "
                    "rejects it before another loosening can be asked for. Nothing was changed.")
            pending = SkillChange.objects.create(skill=current, fields=loosening, requested_by=actor, comment=comment)
            audit_record(actor=actor, action="skill.change_requested", obj=pending, team=current.team,
                         data={"skill": current.slug, "changes": loosening, "comment": comment})
        if applied:
            Skill.objects.filter(pk=current.pk).update(**{name: change["after"] for name, change in applied.items()})
            audit_record(actor=actor, action="skill.updated", obj=current, team=current.team,
                         data={"skill": current.slug, "changes": applied})
    for name, change in applied.items():
        setattr(skill, name, change["after"])
    return SkillUpdate(applied=applied, pending=pending)


def skill_change_decide(*, change: SkillChange, actor, decision: str, comment: str = "") -> SkillChange:
    """A skill owner approves a pending change — applying it, if the skill still has the values it was asked
    against — or rejects it. The requester may reject (withdraw) their own change, never approve it."""
    skill = change.skill
    require_role(actor, skill.team, Role.SKILL_OWNER, action=f"decide on changes to the skill {skill.slug}")
    if decision not in ("approve", "reject"):
        raise SkillEditRefused(f"Unknown decision {decision!r}: use approve or reject.")
    if actor is None:
        raise SkillEditRefused(f"A change to {skill.slug}'s rules is decided by a skill owner, not by the system.")
    if decision == "approve" and is_machine(actor):
        raise SelfApprovalRefused(
            f"{actor.get_username()} is a service account: approving a change to {skill.slug}'s rules is a "
            "person's decision (four-eyes rule).")
    if decision == "approve" and (actor.pk == change.requested_by_id or same_person(actor, change.requested_by)):
        raise SelfApprovalRefused(
            f"{actor.get_username()} asked for this change to {skill.slug} and cannot also approve it: another "
            "skill owner must review it (four-eyes rule).")
    status = C.APPROVED if decision == "approve" else C.REJECTED
    with transaction.atomic():
        current = Skill.objects.select_for_update().get(pk=skill.pk)
        claimed = SkillChange.objects.filter(pk=change.pk, status=C.PENDING).update(
            status=status, decided_by=actor, decided_at=timezone.now(), decision_comment=comment)
        if claimed != 1:
            change.refresh_from_db(fields=["status"])
            raise SkillEditRefused(f"This change to {skill.slug} was already {change.status}.")
        if status == C.APPROVED:
            moved = {name: values["before"] for name, values in change.fields.items()
                     if getattr(current, name) != values["before"]}
            if moved:
                expected = ", ".join(f"{name} = {value!r}" for name, value in moved.items())
                raise SkillEditRefused(f"{skill.slug}'s {', '.join(moved)} changed since this was asked for (it "
                                       f"expected {expected}): reject it and ask again.")
            Skill.objects.filter(pk=current.pk).update(**{name: values["after"] for name, values in change.fields.items()})
        audit_record(actor=actor, action=f"skill.change_{status}", obj=change, team=current.team,
                     data={"skill": current.slug, "changes": change.fields, "requested_by": change.requested_by_id,
                           "comment": comment})
    change.refresh_from_db()
    return change


def skill_archive(*, skill: Skill, actor) -> Skill:
    """Take an active skill out of the gate (its suite is no longer scored; no new training)."""
    return _skill_status(skill=skill, actor=actor, old=S.ACTIVE, new=S.ARCHIVED, verb="archived")


def skill_reactivate(*, skill: Skill, actor) -> Skill:
    """Bring an archived skill back: the next gate scores it again."""
    return _skill_status(skill=skill, actor=actor, old=S.ARCHIVED, new=S.ACTIVE, verb="reactivated")


def _skill_status(*, skill: Skill, actor, old: str, new: str, verb: str) -> Skill:
    skill_edit_authorize(skill=skill, actor=actor)
    with transaction.atomic():
        if Skill.objects.filter(pk=skill.pk, status=old).update(status=new) != 1:
            skill.refresh_from_db(fields=["status"])
            raise SkillEditRefused(f"{skill.slug} is {skill.status}: only an {old} skill can be {verb}.")
        audit_record(actor=actor, action=f"skill.{verb}", obj=skill, team=skill.team,
                     data={"skill": skill.slug, "status": {"before": old, "after": new}})
    skill.status = new
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
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise UploadRefused(f"The split seed {seed} is out of range: use a number from {SEED_RANGE[0]} to "
                            f"{SEED_RANGE[1]}, or leave it out. Nothing was saved.")
    filename = file_label(filename)
    limits, count_tokens = upload_limits(budget=budget)
    rows = RowIndex(prompts=eval_path is not None)
    report = validate_upload(path, limits=limits, count_tokens=count_tokens, index=rows, filename=filename)
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


def demonstration_set_save(*, skill: Skill, validated: ValidatedUpload, path, actor, eval_path=None,
                           upload_token: str | None = None) -> DemonstrationSet:
    """Save a file `demonstration_set_preview` validated as the skill's next demonstration set, reading it
    (and the eval file) once. Refuses, saving nothing, when the content was uploaded meanwhile or the file
    changed since it was validated. With `upload_token` (the browser's pending upload), saving the same
    token again — a double click, two tabs — returns the set saved the first time, reading nothing."""
    require_role(actor, skill.team, Role.CONTRIBUTOR, action=f"upload demonstrations for {skill.slug}")
    return _save(skill=skill, validated=validated, path=path, eval_path=eval_path, actor=actor,
                 upload_token=upload_token)


def _save(*, skill: Skill, validated: ValidatedUpload, path, eval_path, actor,
          upload_token: str | None = None) -> DemonstrationSet:
    if (eval_path is None) != (validated.eval_sha256 is None):
        raise ValueError("pass eval_path exactly when the upload was validated with an eval file")
    sha, eval_sha = hashlib.sha256(), hashlib.sha256()
    # The rows go in as they are read and the checksum is known only after the last one: a file that
    # changed since it was validated rolls the whole transaction back.
    with transaction.atomic():
        # Saves of one skill take turns (PostgreSQL: a row lock; SQLite serialises writers anyway): a second
        # confirmation of the same upload waits for the first to commit, then finds its set below instead
        # of colliding with it on the version number.
        Skill.objects.select_for_update().filter(pk=skill.pk).first()
        if upload_token is not None:
            saved = DemonstrationSet.objects.filter(upload_token=upload_token).first()
            if saved is not None and saved.skill_id == skill.pk:
                return saved
            if saved is not None:
                raise UploadRefused("This upload was saved for another skill; upload the file again.")
        duplicate = DemonstrationSet.objects.filter(skill=skill, content_sha256=validated.content_sha256).first()
        if duplicate is not None:
            raise UploadRefused(_same_content(duplicate))
        number = (DemonstrationSet.objects.filter(skill=skill).aggregate(n=Max("version"))["n"] or 0) + 1
        dset = DemonstrationSet.objects.create(
            skill=skill, version=number, content_sha256=validated.content_sha256, format=validated.format,
            filename=validated.filename, row_count=validated.row_count, train_count=validated.train_count,
            eval_count=validated.eval_count, split_seed=validated.seed, created_by=actor, stats=validated.stats,
            upload_token=upload_token,
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
