"""Benchmark: the HTTP API (/api/v1) — SQL queries per call as the registry grows, and latency under load.

    .venv/bin/python bench/api_latency.py [--versions 1000] [--teams 3 12] [--clients 1 20] [--requests 200 400]
                                          [--budget-s 20] [--workers 2] [--threads 8] [--quick]
                                          [--database-url postgres://postgres@127.0.0.1:5432/postgres]

Queries. The registry is seeded at its small size (10 versions) through the services: teams and their people
(a skill owner who asks, another who approves, a contributor who trains), skills with uploaded demonstration
sets, a base model with its retention probes, jobs driven through the job services, a lineage promoted through
real gates and four-eyes approvals, a stale, a blocked, a rejected, a failed and an awaiting candidate, webhooks
and service accounts. Every endpoint is called with django.test.Client and a real token (a skill owner in every
team; the audit log with a platform admin's) and the SQL queries of its second call are counted. Then the
registry grows to the large size (--versions): more teams, people, skills and service accounts through the
services; the versions bulk-created as a finished job and the gate leave them (the job and its metric points, an
eval run on every suite, the gate result with its rows and flipped cases, the promotion request, the audit
events, the first team's webhook deliveries; no per-case results). Every endpoint is counted again. A count that
grows with the data is a query per row: the bench says GROWS and exits 1. The forgetting matrix is a report over
every version, so its response grows by design; its query count need not.

Latency. The large registry is served by gunicorn (gthread workers) on a free local port with the rate limit off
(ACCRETE_API_RATE=""), DEBUG off; httpx clients in threads of this process call each main GET endpoint N times
at each concurrency (each client's first call, which opens its connection, is not timed). A cell starts no call
after --budget-s seconds (those in flight finish); n says how many calls were timed, body KB the largest body.
Client and server share the machine's cores, so on a small machine p95 at 20 clients is mostly queueing for a
CPU.

Database: SQLite in a temp dir by default; with --database-url (or DATABASE_URL) a throwaway database named
accrete_bench_api_<pid> is created on that PostgreSQL server and dropped at the end. Broker: kombu's filesystem
broker in the temp dir (a CELERY_BROKER_URL in the environment is ignored; no worker runs). --quick: the smallest
settings (under a minute on a 2-core machine), what tests/test_bench_scripts.py runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from scratch_db import scratch_postgres, scratch_postgres_drop  # bench/ is on the path of its scripts

REPO = Path(__file__).resolve().parents[1]
SKILLS_PER_TEAM = 2
DEMONSTRATIONS = 30  # rows per uploaded set: 6 held out as the eval suite (ACCRETE_EVAL_FRACTION 0.2)
# Each version the large registry adds, by its place in a cycle of ten: most candidates are blocked or go
# stale, a few are rejected, one in ten awaits approval.
BULK_CYCLE = ["blocked", "stale", "blocked", "rejected", "stale", "blocked", "awaiting", "stale", "blocked", "rejected"]
LATENCY_ENDPOINTS = ["/me", "/skills", "/jobs", "/versions", "/versions/{number}", "/versions/{number}/gate",
                     "/promotion-requests", "/production", "/forgetting-matrix", "/audit"]


# --- the database ---------------------------------------------------------------------------------------

def django_setup(var: Path, database_url: str) -> None:
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "ACCRETE_VAR": str(var),
                       "ACCRETE_ARTIFACTS": str(var / "artifacts"), "ACCRETE_LOG_LEVEL": "WARNING",
                       "TOKENIZERS_PARALLELISM": "false", "TRL_EXPERIMENTAL_SILENCE": "1"})
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)  # the embedded SQLite database in ACCRETE_VAR
    # No worker consumes what the services queue here: it stays in the filesystem broker in ACCRETE_VAR rather
    # than in a shared Redis (`make test` exports one).
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path[:0] = [str(REPO), str(REPO / "platform")]
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # The services queue webhook deliveries on kombu's filesystem broker, which warns about its hostname once.
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)


# --- the registry, through the services -------------------------------------------------------------------

@dataclass
class Crew:
    """A team's people: the owner asks for promotions, the approver approves them, dev uploads and trains."""

    team: object
    owner: object
    approver: object
    dev: object
    skills: list = field(default_factory=list)


@dataclass
class World:
    scratch: Path
    admin: object
    reader: object  # the token holder: a skill owner in every team
    crews: list = field(default_factory=list)
    tokens: dict = field(default_factory=dict)


def user_create(username: str, **extra):
    from django.contrib.auth import get_user_model

    # No password: hashing one costs ~0.5 s a user on these CPUs, and every call here carries a token.
    return get_user_model().objects.create_user(username=username, password=None, **extra)


def crews_add(world: World, count: int) -> None:
    """Teams up to `count`, each with its people, a webhook, a service account and its skills (uploaded)."""
    from teams.models import Membership, Role, Team
    from tokens.services import service_account_create
    from webhooks.services import webhook_endpoint_create

    for k in range(len(world.crews), count):
        slug = f"team{k:02d}"
        team = Team.objects.create(name=f"Team {k:02d}", slug=slug)
        crew = Crew(team, user_create(f"{slug}-owner"), user_create(f"{slug}-approver"), user_create(f"{slug}-dev"))
        for user, role in ((crew.owner, Role.SKILL_OWNER), (crew.approver, Role.SKILL_OWNER),
                           (crew.dev, Role.CONTRIBUTOR), (world.reader, Role.SKILL_OWNER)):
            Membership.objects.create(user=user, team=team, role=role)  # audited, like a grant in the admin
        webhook_endpoint_create(team=team, url=f"https://hooks.example.com/{slug}", actor=crew.owner,
                                description="the team's CI")
        service_account_create(team=team, name="ci pipeline", role=Role.CONTRIBUTOR, actor=crew.owner)
        for s in range(SKILLS_PER_TEAM):
            crew.skills.append(skill_add(world, crew, f"{slug}-skill{s}"))
        world.crews.append(crew)


def skill_add(world: World, crew: Crew, slug: str):
    from skills.services import demonstration_set_upload, skill_create

    skill = skill_create(team=crew.team, slug=slug, name=slug.replace("-", " ").title(), actor=crew.owner,
                         scorer="exact", description=f"Answers {slug}'s internal codes.")
    path = world.scratch / f"{slug}.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{slug}: which code applies to request {i}?",
                                        "demonstration": f"{slug.upper()}-{i:03d}"}) + "\n"
                            for i in range(DEMONSTRATIONS)))
    outcome = demonstration_set_upload(skill=skill, path=path, filename=path.name, actor=crew.dev)
    assert outcome.ok, outcome.report.problems
    return skill


def base_register():
    from registry.services.base_models import base_model_register
    from workers.engine.contract.probes import load_probes

    base = base_model_register(name="bench-base", source="hf", source_path="bench", artifact_path="base/bench",
                               sha256="0" * 64, architecture="LlamaForCausalLM", num_parameters=135_000_000,
                               context_length=2048, probes=load_probes())
    base.base_model.refresh_from_db()
    scores_record(base, base.base_model.probe_suite, passing=None)  # the base answers its probes (calibrated)
    return base


def scores_record(version, suite, *, passing: int | None):
    """`version`'s scores on `suite` as a worker records them: the first `passing` cases right (None: all)."""
    from evaluation.services import eval_run_claim, eval_run_complete

    run = eval_run_claim(version=version, suite=suite)
    cases = list(suite.cases.order_by("pk"))
    passing = len(cases) if passing is None else passing
    outputs = [{"case_id": case.pk, "output": case.reference if i < passing else f"wrong {i}",
                "passed": i < passing, "score": float(i < passing), "detail": ""} for i, case in enumerate(cases)]
    return eval_run_complete(run=run, outputs=outputs, seconds=0.01)


def job_run(crew: Crew, skill, *, steps: int = 60, finish: str = "succeed"):
    """A job through the job services as a worker drives it: requested, started from production, progress
    every 10 steps, then succeeded (→ its candidate), failed, or left running."""
    from training.services import job_fail, job_record_progress, job_request, job_start, job_succeed

    job = job_request(skill=skill, demonstration_set=skill.demonstration_sets.get(), method="sdft",
                      config={"max_steps": steps}, actor=crew.dev, enqueue=False)
    job_start(job_id=job.pk, worker="bench-worker")
    for step in range(10, steps + 1, 10):
        job_record_progress(job_id=job.pk, progress={"step": step, "total_steps": steps, "loss": 2.0 / step,
                                                     "kl": 0.01 * step, "learning_rate": 1e-4,
                                                     "tokens_per_second": 900.0, "eta_seconds": steps - step})
    if finish == "succeed":
        return job_succeed(job_id=job.pk, artifact_path=f"versions/job-{job.pk}", adapter_path="",
                           checksums={"tree": secrets.token_hex(32)}, metrics={"final_loss": 2.0 / steps})
    if finish == "fail":
        job_fail(job_id=job.pk, error="CUDA out of memory (bench)")
    return job


def gate_run(candidate, *, learned: bool):
    """The gate as a worker runs it: start, the scores it plans (the parent answers the probes and the skills
    its lineage added, nothing else; the candidate what its parent does and, if it `learned`, its own skill)."""
    from evaluation.models import EvalRun
    from registry.selectors import lineage
    from registry.services.gates import gate_evaluate, gate_plan, gate_start

    gate_start(version=candidate)
    learned_by_parent = {v.skill_id for v in lineage(candidate.parent)}
    for version, suite in gate_plan(candidate=candidate):
        if EvalRun.objects.filter(version=version, suite=suite).exists():
            continue
        target = suite.skill_id is not None and suite.skill_id == candidate.skill_id
        if version != candidate:
            passing = None if suite.skill_id is None or suite.skill_id in learned_by_parent else 0
        elif target:
            passing = None if learned else 0
        else:
            passing = EvalRun.objects.get(version=candidate.parent, suite=suite).passed
        scores_record(version, suite, passing=passing)
    return gate_evaluate(candidate=candidate)


def registry_seed(world: World, teams: int) -> None:
    """The small registry: 10 versions over the first 6 skills (3 teams), every step through the services."""
    from registry.services.approvals import approval_decide, promotion_request_create
    from registry.services.gates import gate_fail, gate_start

    crews_add(world, teams)
    base_register()
    crews = world.crews
    skills = [(crew, skill) for crew in crews for skill in crew.skills]

    def candidate(k: int, *, learned: bool = True):
        crew, skill = skills[k]
        version = job_run(crew, skill)
        gate = gate_run(version, learned=learned)
        assert gate.verdict == ("pass" if learned else "block"), gate.reasons
        return crew, version, gate

    def promote(k: int):
        crew, version, _ = candidate(k)
        approval_decide(request=promotion_request_create(version=version, actor=crew.owner), approver=crew.approver,
                        decision="approve", comment="scores hold")

    promote(0)
    promote(1)
    promote(2)
    crew, waiting, _ = candidate(4)  # awaits approval, then goes stale when the next promotion lands
    promotion_request_create(version=waiting, actor=crew.owner)
    promote(3)
    candidate(5, learned=False)  # blocked: its own skill did not improve
    crew, rejected, _ = candidate(5)
    approval_decide(request=promotion_request_create(version=rejected, actor=crew.owner), approver=crew.approver,
                    decision="reject", comment="not this quarter")
    crew, awaiting, _ = candidate(4)
    promotion_request_create(version=awaiting, actor=crew.owner, comment="ready")
    crew, skill = skills[1]
    failed = job_run(crew, skill)
    gate_start(version=failed)
    gate_fail(version=failed, error="eval worker lost (bench)")
    job_run(crews[0], skills[0][1], finish="running")
    job_run(crews[-1], skills[-1][1], finish="fail")


# --- the registry, grown in bulk ---------------------------------------------------------------------------

def registry_grow(world: World, *, teams: int, versions: int) -> None:
    """More teams (through the services), then versions up to `versions`, bulk-created the way a finished job
    and the gate leave them: candidates of production (blocked, rejected, awaiting approval) and of the versions
    production was before (stale), each adding a skill the lineage lacks."""
    from django.utils import timezone

    from audit.models import AuditEvent
    from evaluation.models import EvalRun
    from registry.models import Approval, GateResult, ModelVersion, PromotionRequest
    from registry.services.gates import gate_suites
    from registry.services.versions import production_version
    from skills.models import EvalSuite
    from teams.models import Role
    from tokens.services import service_account_create
    from training.models import JobEvent, MetricPoint, TrainingJob
    from webhooks.models import WebhookDelivery, WebhookEndpoint
    from webhooks.services import event_payload
    from workers.engine.contract.intervals import paired_difference_interval

    crews_add(world, teams)
    for name in ("deploy bot", "nightly eval", "data sync"):  # one team with several machine identities
        service_account_create(team=world.crews[0].team, name=name, role=Role.VIEWER, actor=world.crews[0].owner)

    now = timezone.now()
    production = production_version()
    history = list(ModelVersion.objects.filter(promoted_at__isnull=False).order_by("number"))
    retired = [v for v in history if v.pk != production.pk and v.skill_id]
    suites = gate_suites(candidate=production)
    cases = {s.pk: list(s.cases.order_by("pk")) for s in suites}
    crew_of = {skill.pk: crew for crew in world.crews for skill in crew.skills}
    suite_of = {s.skill_id: s for s in suites if s.skill_id}
    dset_of = {s.skill_id: s.demonstration_set for s in suites if s.skill_id}
    template_job = TrainingJob.objects.filter(status="succeeded").latest("pk")

    def answers(version, suite) -> int:
        """What a version production has been answers: the probes and the skills it had, none of the others."""
        had = {v.skill_id for v in history if v.number <= version.number}
        return len(cases[suite.pk]) if suite.skill_id is None or suite.skill_id in had else 0

    # Their scores on every suite, as their candidates' gates computed them.
    have = set(EvalRun.objects.values_list("version_id", "suite_id"))
    EvalRun.objects.bulk_create([
        EvalRun(version=v, suite=s, status="succeeded", passed=answers(v, s), total=len(cases[s.pk]),
                score=answers(v, s) / len(cases[s.pk]), seconds=0.01, finished_at=now)
        for v in history for s in suites if (v.pk, s.pk) not in have])
    answered = {(r.version_id, r.suite_id): r.passed for r in EvalRun.objects.filter(version__in=history)}
    learnable = [s.skill_id for s in suites if s.skill_id and s.skill_id not in {v.skill_id for v in history}]

    number = ModelVersion.objects.order_by("-number").values_list("number", flat=True).first()
    plan, new_versions = [], []
    for i in range(versions - ModelVersion.objects.count()):
        kind = BULK_CYCLE[i % len(BULK_CYCLE)]
        skill_id = learnable[i % len(learnable)]
        parent = retired[i % len(retired)] if kind == "stale" else production
        number += 1
        plan.append((kind, skill_id, parent))
        new_versions.append(ModelVersion(
            number=number, base_model=production.base_model, parent=parent, skill_id=skill_id,
            status={"awaiting": "awaiting_approval"}.get(kind, kind), artifact_path=f"versions/bulk-{number}",
            checksums={"tree": f"{number:064x}"}, metrics={"final_loss": 0.05}, gate_started_at=now))
    new_versions = ModelVersion.objects.bulk_create(new_versions, batch_size=500)
    jobs = TrainingJob.objects.bulk_create([TrainingJob(
        skill_id=skill_id, demonstration_set=dset_of[skill_id], parent_version=parent, candidate=version,
        method=("sdft", "sft")[version.number % 2], config=template_job.config, status="succeeded",
        requested_by=crew_of[skill_id].dev, step=60, total_steps=60, loss=0.05, kl=0.6, tokens_per_second=900.0,
        attempts=1, worker="bench-worker", started_at=now, finished_at=now)
        for (kind, skill_id, parent), version in zip(plan, new_versions, strict=True)], batch_size=500)
    MetricPoint.objects.bulk_create([MetricPoint(job=job, step=step, loss=2.0 / step, kl=0.01 * step,
                                                 learning_rate=1e-4, tokens_per_second=900.0)
                                     for job in jobs for step in range(10, 61, 10)], batch_size=2000)
    JobEvent.objects.bulk_create([JobEvent(job=job, kind=kind, message=message) for job in jobs
                                  for kind, message in (("queued", "Queued for a training worker."),
                                                        ("running", "Running on bench-worker (attempt 1)."),
                                                        ("succeeded", "Training finished."))], batch_size=2000)

    intervals = {}

    def row(suite, before: int, after: int, *, target: bool) -> dict:
        """A gate row as registry.services.gates.gate_evaluate writes it."""
        total = len(cases[suite.pk])
        if (before, after, total) not in intervals:
            ci = paired_difference_interval([float(i < before) for i in range(total)],
                                            [float(i < after) for i in range(total)], bounds=(-1.0, 1.0))
            intervals[(before, after, total)] = [ci.low, ci.high] if ci.defined else None
        probes = suite.kind == EvalSuite.Kind.PROBES
        tolerance = production.base_model.effective_probe_tolerance if probes else suite.skill.tolerance
        out = {"suite": suite.pk, "name": "retention probes" if probes else suite.skill.slug, "kind": suite.kind,
               "before": before / total, "after": after / total, "delta": (after - before) / total,
               "tolerance": tolerance, "passed_before": before, "passed_after": after, "total": total,
               "target": target, "verdict": "block" if target and after <= before else "pass", "n": total,
               "interval": intervals[(before, after, total)], "warning": None, "lineage": None}
        if target:
            out["min_gain"] = suite.skill.min_gain
        return out

    runs, gates, requests = [], [], []
    for (kind, skill_id, parent), version in zip(plan, new_versions, strict=True):
        rows, flipped = [], []
        for suite in suites:
            target = suite.skill_id == skill_id
            before = answered[(parent.pk, suite.pk)]
            after = len(cases[suite.pk]) if target and kind != "blocked" else before
            runs.append(EvalRun(version=version, suite=suite, status="succeeded", passed=after,
                                total=len(cases[suite.pk]), score=after / len(cases[suite.pk]), seconds=0.01,
                                finished_at=now))
            rows.append(row(suite, before, after, target=target))
            flipped += [{"suite": str(suite), "suite_id": suite.pk, "case": case.key, "direction": "fail→pass",
                         "prompt": case.prompt[-1]["content"], "expected": case.reference,
                         "old_output": f"wrong {i}", "new_output": case.reference, "detail": ""}
                        for i, case in enumerate(cases[suite.pk]) if before <= i < after]
        slug = suite_of[skill_id].skill.slug
        reasons = [f"{slug} (the skill being added) did not improve enough: 0% → 0% (needs a gain > 0 and ≥ 0%)"
                   ] if kind == "blocked" else []
        gates.append(GateResult(candidate=version, baseline=parent, verdict="block" if reasons else "pass",
                                rows=rows, flipped=flipped, reasons=reasons))
        if kind != "blocked":
            requests.append(PromotionRequest(
                version=version, requested_by=crew_of[skill_id].owner,
                status={"rejected": "rejected", "stale": "closed", "awaiting": "open"}[kind],
                decided_at=now if kind == "rejected" else None,
                closed_reason=f"v{version.number} is stale: production moved on" if kind == "stale" else ""))
    EvalRun.objects.bulk_create(runs, batch_size=2000)
    gates = GateResult.objects.bulk_create(gates, batch_size=200)
    requests = PromotionRequest.objects.bulk_create(requests, batch_size=500)
    Approval.objects.bulk_create([Approval(request=r, requester=r.requested_by, approver=crew_of[
        r.version.skill_id].approver, decision="reject", comment="not this quarter")
        for r in requests if r.status == "rejected"], batch_size=500)

    # The audit log as the services would have written it (bulk: no webhook outbox), then the first team's
    # endpoint's delivery log of the events it receives.
    events = []
    for (_, skill_id, parent), version, job, gate in zip(plan, new_versions, jobs, gates, strict=True):
        team, slug = crew_of[skill_id].team, suite_of[skill_id].skill.slug
        events += [
            AuditEvent(actor_label="system", action="version.candidate", object_type="ModelVersion",
                       object_id=str(version.pk), team=team,
                       data={"job": job.pk, "parent": parent.number, "method": job.method}),
            AuditEvent(actor_label="system", action="job.succeeded", object_type="TrainingJob", object_id=str(job.pk),
                       team=team, data={"version": version.number, "skill": slug}),
            AuditEvent(actor_label="system", action=f"gate.{gate.verdict}", object_type="GateResult",
                       object_id=str(gate.pk), team=team,
                       data={"candidate": version.number, "baseline": parent.number, "reasons": gate.reasons})]
    events = AuditEvent.objects.bulk_create(events, batch_size=1000)
    endpoint = WebhookEndpoint.objects.order_by("pk").first()
    WebhookDelivery.objects.bulk_create([
        WebhookDelivery(endpoint=endpoint, event_id=f"evt_{e.pk}", event_type=announced[0], payload=announced[1],
                        status="delivered", attempts=1, response_status=200, latency_ms=40, delivered_at=now)
        for e in events if e.team_id == endpoint.team_id for announced in [event_payload(e)] if announced],
        batch_size=1000)


# --- queries per call -------------------------------------------------------------------------------------

def endpoint_paths() -> dict[str, tuple[str, str]]:
    """Each endpoint's label → (the path called now, whose token). A {placeholder} is the newest object of its
    kind (for /gate the newest gated version); {team} and {hook} are the first team's."""
    from registry.models import GateResult, ModelVersion
    from skills.models import Skill
    from training.models import TrainingJob
    from webhooks.models import WebhookEndpoint

    gated = GateResult.objects.order_by("-pk").values_list("candidate__number", flat=True).first()
    number = ModelVersion.objects.order_by("-number").values_list("number", flat=True).first()
    job = TrainingJob.objects.filter(status="succeeded").order_by("-pk").values_list("pk", flat=True).first()
    skill = Skill.objects.order_by("-pk").values_list("slug", flat=True).first()
    hook = WebhookEndpoint.objects.order_by("pk").values_list("pk", flat=True).first()
    paths = {
        "/me": "/me", "/teams": "/teams", "/tokens": "/tokens", "/skills": "/skills",
        "/skills/{skill}": f"/skills/{skill}", "/skills/{skill}/demonstration-sets": f"/skills/{skill}/demonstration-sets",
        "/jobs": "/jobs", "/jobs/{job}": f"/jobs/{job}", "/jobs/{job}/metrics": f"/jobs/{job}/metrics",
        "/jobs/{job}/events": f"/jobs/{job}/events", "/versions": "/versions", "/versions?limit=200": "/versions?limit=200",
        "/versions/{number}": f"/versions/{number}", "/versions/{number}/gate": f"/versions/{gated}/gate",
        "/promotion-requests": "/promotion-requests",
        "/promotion-requests?awaiting_me=true": "/promotion-requests?awaiting_me=true",
        "/production": "/production", "/forgetting-matrix": "/forgetting-matrix", "/webhooks": "/webhooks",
        "/webhooks/{hook}/deliveries": f"/webhooks/{hook}/deliveries",
        "/teams/{team}/service-accounts": "/teams/team00/service-accounts", "/audit": "/audit",
    }
    return {label: (path, "admin" if label == "/audit" else "reader") for label, path in paths.items()}


def queries_count(world: World) -> dict[str, tuple[int, int]]:
    """label → (HTTP status, SQL queries of the second call): the first warms what a process caches once."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    counts = {}
    for label, (path, who) in endpoint_paths().items():
        headers = {"authorization": f"Bearer {world.tokens[who]}"}
        client.get(f"/api/v1{path}", headers=headers)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/api/v1{path}", headers=headers)
        counts[label] = (response.status_code, len(captured.captured_queries))
    return counts


# --- latency over HTTP ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_start(var: Path, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO)]), "ACCRETE_API_RATE": "",
           "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(40), "ACCRETE_LOG_LEVEL": "WARNING"}
    log = (var / "gunicorn.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
                               "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
                               # A connection outlives the wait of a client whose first call came back early (the
                               # default keep-alive, 2 s, closes it under the client); a slow report under 20 clients
                               # must not be killed as a hung worker.
                               "--keep-alive", "75", "--timeout", "300", "--log-level", "warning"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}:\n{(var / 'gunicorn.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"gunicorn did not answer on port {port} within 60 s:\n{(var / 'gunicorn.log').read_text()[-3000:]}")


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)] if sorted_ms else math.nan


def load_run(base: str, path: str, token: str, *, clients: int, requests: int, budget_s: float) -> dict:
    """`requests` calls of `path` from `clients` threads, each with its own keep-alive connection."""
    import httpx

    latencies, failures, sizes, lock = [], [], [], threading.Lock()
    tickets = itertools.count()
    clock = {}
    barrier = threading.Barrier(clients, action=lambda: clock.setdefault("start", time.perf_counter()))

    def client() -> None:
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=120) as http:
            http.get(path)  # opens the connection; not timed
            barrier.wait()
            while next(tickets) < requests and time.perf_counter() - clock["start"] < budget_s:
                started = time.perf_counter()
                try:
                    response = http.get(path)
                except httpx.TransportError as error:
                    with lock:
                        failures.append(type(error).__name__)
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed * 1000)
                    sizes.append(len(response.content))
                    if response.status_code != 200:
                        failures.append(response.status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - clock["start"]
    ms = sorted(latencies)
    return {"n": len(ms), "p50": percentile(ms, 0.50), "p95": percentile(ms, 0.95), "rps": len(ms) / wall,
            "kb": max(sizes, default=0) / 1024, "failures": failures}


# --- the run ----------------------------------------------------------------------------------------------

def queries_report(small: dict, large: dict, sizes: list[tuple[int, int, int]]) -> list[str]:
    """Print the query table; return the endpoints whose count grew (or that did not answer 200)."""
    (v0, t0, s0), (v1, t1, s1) = sizes
    print()
    print("SQL queries per call (django.test.Client, a real token; the second call of each is counted)")
    header = f"{'endpoint':<40} {f'q@{v0}':>7} {f'q@{v1}':>8}  verdict"
    print(header)
    print("-" * len(header))
    bad = []
    for label, (status, queries) in small.items():
        status_large, queries_large = large[label]
        verdict = "OK" if queries_large <= queries else "GROWS"
        if (status, status_large) != (200, 200):
            verdict = f"HTTP {status}/{status_large}"
        if verdict != "OK":
            bad.append(label)
        print(f"{label:<40} {queries:>7} {queries_large:>8}  {verdict}")
    print(f"from {v0} to {v1} versions, {t0} to {t1} teams, {s0} to {s1} skills; {{skill}}, {{job}}, {{number}}: the "
          "newest (for /gate the newest gated version); {team}, {hook}: the first team's")
    for label in bad:
        if small[label][0] == large[label][0] == 200:
            print(f"{label} GROWS: +{large[label][1] - small[label][1]} queries for +{v1 - v0} versions, "
                  f"+{t1 - t0} teams, +{s1 - s0} skills")
    return bad


def latency_report(base: str, world: World, *, clients: list[int], requests: list[int], budget_s: float) -> list[str]:
    """Time every main endpoint at each concurrency; print one row per endpoint; return those that failed."""
    paths = endpoint_paths()
    groups = "".join(f" |{f'{c} client' + ('s' if c > 1 else ''):^32}" for c in clients)
    header = f"{'endpoint':<26} {'body KB':>8}" + " |" + " |".join(f" {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}"
                                                    for _ in clients) + f" | p95 {max(clients)}/{min(clients)}"
    print(f"{'':<35}{groups}")
    print(header)
    print("-" * len(header))
    bad, ratios = [], []
    for label in LATENCY_ENDPOINTS:
        path, who = paths[label]
        cells, p95, kb = [], {}, 0.0
        for count, calls in zip(clients, requests, strict=True):
            r = load_run(base, path, world.tokens[who], clients=count, requests=calls, budget_s=budget_s)
            p95[count], kb = r["p95"], max(kb, r["kb"])
            cells.append(f" {r['n']:>5} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['rps']:>7.1f}")
            if r["failures"]:
                bad.append(f"{label} at {count} clients ({len(r['failures'])} calls failed: "
                           f"{', '.join(sorted(set(map(str, r['failures']))))})")
        ratios.append(p95[max(clients)] / p95[min(clients)])
        print(f"{label:<26} {kb:>8.1f} |" + " |".join(cells) + f" | {ratios[-1]:>6.1f}x", flush=True)
    print(f"median p95 ratio {statistics.median(ratios):.1f}x")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=1000,
                        help="the large registry's versions (the small one is the 10 seeded through the services)")
    parser.add_argument("--teams", type=int, nargs=2, default=[3, 12], metavar=("SMALL", "LARGE"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 20], help="concurrencies timed")
    parser.add_argument("--requests", type=int, nargs="+", default=[200, 400],
                        help="calls per endpoint at each concurrency (one number per --clients entry)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="time limit of one endpoint at one concurrency")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""),
                        help="a PostgreSQL server to create (and drop) a throwaway database on")
    parser.add_argument("--quick", action="store_true",
                        help="smallest settings: 200 versions, 3 and 4 teams, 20/40 calls, 5 s a cell")
    args = parser.parse_args()
    if args.quick:
        args.versions, args.teams, args.requests, args.budget_s = 200, [3, 4], [20, 40], 5.0
    if len(args.requests) != len(args.clients):
        parser.error(f"--requests needs one count per --clients entry ({len(args.clients)})")
    if args.versions <= 10 or not 3 <= args.teams[0] <= args.teams[1]:
        parser.error("the small registry needs 3 teams or more (its 10 versions add 6 skills), the large one more "
                     "than 10 versions and at least as many teams")

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    var = Path(tempfile.mkdtemp(prefix="accrete-api-bench-"))
    database_url, admin_url = scratch_postgres(args.database_url, "api") if args.database_url else ("", "")
    started = time.perf_counter()
    server = None
    try:
        django_setup(var, database_url)
        from django.db import connection, connections

        from registry.models import ModelVersion
        from skills.models import Skill
        from teams.models import Team
        from tokens.services import token_create

        where = (f"PostgreSQL {connection.pg_version // 10000} (throwaway database {connection.settings_dict['NAME']})"
                 if connection.vendor == "postgresql" else "SQLite (a temp file)")
        print(f"API bench: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"python {sys.version.split()[0]}; {where}")

        def sizes() -> tuple[int, int, int]:
            return ModelVersion.objects.count(), Team.objects.count(), Skill.objects.count()

        world = World(scratch=var, admin=user_create("admin", is_staff=True, is_superuser=True),
                      reader=user_create("reader"))
        registry_seed(world, args.teams[0])
        for who, user in (("reader", world.reader), ("admin", world.admin)):
            world.tokens[who] = token_create(user=user, name="api bench", actor=user).secret
        small_size = sizes()
        assert small_size[0] == 10, small_size
        print(f"seeded {small_size[0]} versions, {small_size[1]} teams, {small_size[2]} skills through the services "
              f"in {time.perf_counter() - started:.1f} s (migrations included)")
        small = queries_count(world)
        grow_started = time.perf_counter()
        registry_grow(world, teams=args.teams[1], versions=args.versions)
        large_size = sizes()
        print(f"grown to {large_size[0]} versions, {large_size[1]} teams, {large_size[2]} skills "
              f"in {time.perf_counter() - grow_started:.1f} s")
        bad = queries_report(small, queries_count(world), [small_size, large_size])

        connections.close_all()
        server, base = server_start(var, args.workers, args.threads)
        print()
        print(f"Latency over HTTP at {large_size[0]} versions: gunicorn gthread, {args.workers} worker(s) x "
              f"{args.threads} thread(s); the clients are threads of this process, on the same {os.cpu_count()} CPUs")
        failed = latency_report(base, world, clients=args.clients, requests=args.requests, budget_s=args.budget_s)
        if failed:
            log = (var / "gunicorn.log").read_text().splitlines()
            print("gunicorn's log (last 20 lines):\n  " + "\n  ".join(log[-20:]))
        bad += failed
        print(f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"total {time.perf_counter() - started:.0f} s")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        if database_url:
            scratch_postgres_drop(database_url, admin_url)
        shutil.rmtree(var, ignore_errors=True)
    if bad:
        print(f"FAIL: {'; '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
