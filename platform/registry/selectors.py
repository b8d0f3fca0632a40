"""Reads for the registry: lineage, scores, the forgetting matrix, a gate's report, what awaits whom.

The forgetting matrix and the gate report are each shaped once, here; the pages, `manage.py gate`, the
demo's terminal output and its HTML report all render these dicts (text: registry.reports; HTML: the
frontend/_forgetting_matrix.html and frontend/_gate_table.html partials).

What a signed-in user reads goes through the team-privacy rule (teams.permissions.case_access): a skill's
case contents only to its team and platform admins, names, owning teams, scores and counts to anyone in a
team, nothing to a user in no team. The operator's views (`manage.py gate`, the demo) pass no user."""

from pathlib import Path

from django.conf import settings
from django.db.models import Q, QuerySet

from evaluation.models import EvalRun
from registry.models import GateResult, ModelVersion, PromotionRequest
from registry.services.remedies import remedy_of_gate
from registry.services.versions import production_version  # noqa: F401 (one definition, re-exported)
from skills.models import EvalSuite, Skill
from skills.services import TokenBudget
from teams.models import Role, Team
from teams.permissions import case_access, is_platform_admin


def lineage(version: ModelVersion | None) -> list[ModelVersion]:
    """The chain from the base model to `version`, oldest first."""
    chain = []
    while version is not None:
        chain.append(version)
        version = version.parent
    return chain[::-1]


def production_token_budget() -> TokenBudget:
    """What an upload's lengths are measured against: the production model's context and tokenizer."""
    current = production_version()
    if current is None:
        return TokenBudget()
    base = current.base_model
    return TokenBudget(context_length=base.context_length or 2048,
                       tokenizer_json=Path(settings.ACCRETE_ARTIFACTS) / base.artifact_path / "tokenizer.json")


def versions_visible_to(user) -> QuerySet:
    """The shared lineage — base versions and every version that is or was production — is everyone's in a
    team; a candidate is its skill's team's (and the platform admins'). A user in no team sees none."""
    access = case_access(user)
    qs = ModelVersion.objects.select_related("skill", "skill__team", "parent")
    if access.everything:
        return qs.all()
    if not access.in_a_team:
        return qs.none()
    return qs.filter(Q(skill__isnull=True) | Q(status=ModelVersion.Status.PRODUCTION) | Q(promoted_at__isnull=False)
                     | Q(skill__team_id__in=access.team_ids))


def requests_awaiting(user) -> QuerySet:
    """Open promotion requests this user may decide: a skill owner of the skill's team, not the requester."""
    qs = PromotionRequest.objects.filter(status=PromotionRequest.Status.OPEN).exclude(requested_by=user)
    if not is_platform_admin(user):
        qs = qs.filter(version__skill__team__memberships__user=user,
                       version__skill__team__memberships__role__in=[Role.SKILL_OWNER, Role.PLATFORM_ADMIN])
    return qs.select_related("version", "version__skill", "requested_by").distinct()


def forgetting_matrix(versions: list[ModelVersion] | None = None) -> dict:
    """Versions × suites (each skill's current suite, then the retention probes): score and delta
    against each version's parent, and for gated versions the lineage budget the gate applied (delta
    against the skill's best production score, or the base model for the probes). The numbers are the
    stored eval runs the gates used. An archived skill keeps its column, marked archived (the gate no
    longer scores it, so later versions have no cell there). No versions, no matrix."""
    if versions is None:
        versions = list(ModelVersion.objects.exclude(status=ModelVersion.Status.FAILED).order_by("number"))
    if not versions:
        return {"columns": [], "rows": []}
    newest = {}  # each skill's current suite: its newest (one query, not one per skill)
    for suite in EvalSuite.objects.filter(skill__isnull=False).select_related("skill__team").order_by("pk"):
        newest[suite.skill_id] = suite
    suites = [newest[pk] for pk in sorted(newest)]
    suites += list(EvalSuite.objects.filter(kind=EvalSuite.Kind.PROBES).order_by("pk"))
    runs = {(r.version_id, r.suite_id): r for r in EvalRun.objects.filter(
        version__in=versions, suite__in=suites, status=EvalRun.Status.SUCCEEDED)}
    gates = {g.candidate_id: g for g in GateResult.objects.filter(candidate__in=versions)}
    rows = []
    for version in versions:
        gate = gates.get(version.pk)
        # The lineage budget as the gate recorded it: reference version, score, cumulative delta, budget.
        lineage_of = {row["suite"]: row.get("lineage") for row in gate.rows if "suite" in row} if gate else {}
        cells = []
        for suite in suites:
            run = runs.get((version.pk, suite.pk))
            parent_run = runs.get((version.parent_id, suite.pk)) if version.parent_id else None
            score = run.score if run else None
            delta = (score - parent_run.score) if (run and parent_run and score is not None
                                                   and parent_run.score is not None) else None
            cells.append({"score": score, "delta": delta, "passed": run.passed if run else None,
                          "total": run.total if run else None, "lineage": lineage_of.get(suite.pk)})
        rows.append({"version": version.number, "label": version.label, "status": version.status,
                     "parent": version.parent.number if version.parent_id else None,
                     "method": version.job.method if version.job else None,
                     "gate": gate.verdict if gate else None, "cells": cells})
    columns = [_matrix_column(suite) for suite in suites]
    return {"columns": columns, "rows": rows}


def _matrix_column(suite: EvalSuite) -> dict:
    if suite.kind == EvalSuite.Kind.PROBES:
        return {"suite": suite.pk, "name": "retention probes", "kind": suite.kind, "team": None, "archived": False}
    return {"suite": suite.pk, "name": suite.skill.slug, "kind": suite.kind, "team": suite.skill.team.name,
            "archived": suite.skill.status == Skill.Status.ARCHIVED}


def forgetting_matrix_for(user, *, last: int | None = None) -> dict:
    """The matrix a signed-in user sees (page and JSON): the versions visible to them (the shared lineage and
    their teams' candidates) × every skill's scores — names, owning teams and scores are not private, case
    contents are not in the matrix. A user in no team sees an empty matrix. `last`: only the newest that
    many versions (a registry of thousands of versions makes a matrix of megabytes)."""
    qs = versions_visible_to(user).exclude(status=ModelVersion.Status.FAILED).select_related("training_job")
    if last is not None:
        return forgetting_matrix(list(qs.order_by("-number")[:last])[::-1])
    return forgetting_matrix(list(qs.order_by("number")))


def gate_report(gate: GateResult, user=None) -> dict:
    """One gate as every view of it shows it: the rows (each with its sample size `n` and owning team), the
    lineage rows, the warnings of suites too small for their tolerance, the reasons it blocked, the remedy,
    and the cases that flipped (all of them, and those that went pass→fail).

    With a `user`, the flipped cases follow the team-privacy rule: the cases of a skill whose team the user
    is not in become one entry per suite and direction — {"hidden": True, "suite", "team", "direction",
    "count"} — with no prompt, reference or output. Without one (the operator's `manage.py gate`, the
    demo's report) every case is shown."""
    suites = _suites_of(gate)
    # Gates recorded before the paired intervals carry no `n`: their sample is the suite's size.
    rows = [{**row, "n": row.get("n", row.get("total")), "team": _team_of_row(row, suites)} for row in gate.rows]
    flipped = list(gate.flipped) if user is None else _visible_flips(gate.flipped, suites, case_access(user))
    return {
        "gate": gate,
        "candidate": gate.candidate,
        "baseline": gate.baseline,
        "verdict": gate.verdict,
        "rows": rows,
        "lineage_rows": [row for row in rows if row.get("lineage")],
        "warnings": [(row["name"], row["warning"]) for row in rows if row.get("warning")],
        "reasons": list(gate.reasons),
        "remedy": remedy_of_gate(gate),
        "flipped": flipped,
        "dropped": [f for f in flipped if f["direction"] == "pass→fail"],
        "hidden_flips": sum(f["count"] for f in flipped if f.get("hidden")),
    }


PROBES_LABEL = "retention probes"  # str() of a probe suite, and its row's name


def _suites_of(gate: GateResult) -> dict:
    """The suites a gate scored, by pk (its rows name them)."""
    pks = [row["suite"] for row in gate.rows if "suite" in row]
    return {s.pk: s for s in EvalSuite.objects.filter(pk__in=pks).select_related("skill", "skill__team")}


def _team_of_row(row: dict, suites: dict) -> str | None:
    """The owning team's name of a gate row's skill (None for the probes); a row names its skill by slug."""
    suite = suites.get(row.get("suite"))
    if suite is not None:
        return suite.skill.team.name if suite.skill_id else None
    if row.get("kind") == EvalSuite.Kind.PROBES or row.get("name") == PROBES_LABEL:
        return None
    return Team.objects.filter(skills__slug=row.get("name")).values_list("name", flat=True).first()


def _visible_flips(flips: list[dict], suites: dict, access) -> list[dict]:
    """Flips whose skill's team the user may read, as they are; the others counted per skill and direction.
    A flip whose owner cannot be told is counted, never shown."""
    owners: dict = {}
    shown, hidden = [], {}
    for flip in flips:
        key = (flip.get("suite_id"), flip.get("suite"))
        if key not in owners:
            owners[key] = _owner_of_flip(flip, suites)
        name, team, known = owners[key]
        if known and access.sees(team.pk if team is not None else None):
            shown.append(flip)
            continue
        count_key = (name, team.name if team is not None else None, flip["direction"])
        hidden[count_key] = hidden.get(count_key, 0) + 1
    return shown + [{"hidden": True, "suite": name, "team": team, "direction": direction, "count": count}
                    for (name, team, direction), count in hidden.items()]


def _owner_of_flip(flip: dict, suites: dict) -> tuple[str, object, bool]:
    """(the skill's slug, its team, known) of a flip's suite; the probes are shared (team None). A flip names
    its suite by pk ("suite_id") or by its label, str(suite): "<skill slug> eval (<source>)" or "retention
    probes" — a skill's slug is unique, so the label tells the skill even when the gate's rows do not."""
    suite = suites.get(flip.get("suite_id"))
    if suite is None and flip.get("suite_id") is not None:
        suite = EvalSuite.objects.select_related("skill__team").filter(pk=flip["suite_id"]).first()
    if suite is None:
        suite = next((s for s in suites.values() if str(s) == flip.get("suite")), None)
    if suite is not None:
        return (suite.skill.slug, suite.skill.team, True) if suite.skill_id else (PROBES_LABEL, None, True)
    label = str(flip.get("suite") or "")
    if label == PROBES_LABEL:
        return PROBES_LABEL, None, True
    skill = Skill.objects.select_related("team").filter(slug=label.split(" eval (")[0]).first()
    if skill is not None and label.startswith(f"{skill.slug} eval ("):
        return skill.slug, skill.team, True
    return "a suite", None, False


def version_page(version: ModelVersion, user) -> dict:
    """A version's scorecard (one eval run per suite), its gate (flipped cases as `user` may read them), its
    open promotion request and whether this user may decide it, and the children this user may see."""
    runs = list(EvalRun.objects.filter(version=version).select_related("suite", "suite__skill").order_by("suite_id"))
    gate = GateResult.objects.filter(candidate=version).select_related("baseline").first()
    open_request = PromotionRequest.objects.filter(version=version, status=PromotionRequest.Status.OPEN).select_related(
        "requested_by").first()
    decidable = open_request is not None and requests_awaiting(user).filter(pk=open_request.pk).exists()
    report = gate_report(gate, user=user) if gate is not None else None
    return {
        "version": version,
        "lineage": lineage(version),
        "scorecard": runs,
        "gate": gate,
        "gate_report": report,
        "remedy": report["remedy"] if report is not None else None,
        "open_request": open_request,
        "can_decide": decidable,
        "requests": list(version.promotion_requests.select_related("requested_by").prefetch_related(
            "approvals__approver").order_by("-created_at")),
        "children": list(versions_visible_to(user).filter(parent=version).order_by("number")),
    }
