"""What each `accrete` command does: one function per command, taking the API session and the parsed
arguments and returning the exit code. Results go to stdout, errors to stderr; `--json` prints one JSON
document on stdout instead of the tables."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from accrete_cli.client import Api, problem_line, retrying

JOB_SUCCEEDED = "succeeded"
JOB_ENDED = {"succeeded", "failed", "cancelled"}


def skills(api: Api, args) -> int:
    """The skills of my teams: slug, name, team, status."""
    items = api.skills()
    if args.json:
        return _print_json(items)
    _table(["slug", "name", "team", "status"], [[s["slug"], s["name"], s["team"], s["status"]] for s in items])
    return 0


def upload(api: Api, args) -> int:
    """Validate a demonstrations file and save it as the skill's next set (with --dry-run: validate only,
    and print the pending upload's token for `accrete confirm`). An invalid file raises the API's 422,
    whose problems main prints as FILE:LINE: message — fix."""
    report = api.upload(args.skill, Path(args.file), eval_file=Path(args.eval) if args.eval else None,
                        seed=args.seed, confirm=not args.dry_run)
    print(f"{report['filename']}: {report['row_count']} row(s) ({report['format']}), "
          f"{report['usable_row_count']} usable: {report['train_count']} to train on, "
          f"{report['eval_count']} held out for the gate.")
    if report.get("eval_report"):
        print(f"{args.eval}: {report['eval_report']['row_count']} eval row(s).")
    for problem in report.get("problems", []):  # rows skipped in a file that is valid as a whole
        print(problem_line({"file": report["filename"], **problem}))
    for message in report.get("messages", []):
        print(f"  {message}")
    saved = report.get("demonstration_set")
    if saved:
        print(f"Saved as demonstration set {saved['id']} ({saved['skill']} v{saved['version']}).")
    else:
        print(f"Valid; nothing saved (dry run). Save it with: accrete confirm {report['token']}")
    return 0


def confirm(api: Api, args) -> int:
    """Save an upload validated by `accrete upload --dry-run`."""
    saved = api.upload_confirm(args.token)
    print(f"Saved as demonstration set {saved['id']} ({saved['skill']} v{saved['version']}).")
    return 0


def train(api: Api, args) -> int:
    """Queue a training job; with --watch, follow it (the exit code is then the job's, as for `jobs watch`)."""
    job = api.job_create(args.skill, args.method, dict(args.set or []), args.demonstration_set)
    if args.json and not args.watch:
        return _print_json(job)
    print(f"Job {job['id']} {job['status']}: {job['skill']} by {job['method'].upper()} "
          f"(demonstration set {job['demonstration_set']}).")
    if not args.watch:
        print(f"Follow it with: accrete jobs watch {job['id']}")
        return 0
    return _watch(api, job["id"], args.interval)


def jobs(api: Api, args) -> int:
    """The latest jobs of my teams, newest first."""
    items = api.jobs(skill=args.skill, status=args.status, limit=args.limit)
    if args.json:
        return _print_json(items)
    _table(["id", "skill", "method", "status", "step", "loss", "candidate", "created"],
           [[j["id"], j["skill"], j["method"], j["status"], f"{j['step']}/{j['total_steps'] or '?'}",
             _number(j["loss"]), f"v{j['candidate_version']}" if j["candidate_version"] else "",
             j["created_at"][:16].replace("T", " ")] for j in items])
    return 0


def jobs_watch(api: Api, args) -> int:
    """Follow a job until it ends: 0 when it succeeded, 1 when it failed or was cancelled."""
    return _watch(api, args.id, args.interval)


def _watch(api: Api, job_id: int, interval: float) -> int:
    job = api.job(job_id)
    console = Console(highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(_job_line(job), total=job["total_steps"] or None, completed=job["step"])
        while job["status"] not in JOB_ENDED:
            time.sleep(interval)
            seen, job = job, retrying(lambda: api.job(job_id))
            progress.update(bar, description=_job_line(job), total=job["total_steps"] or None, completed=job["step"])
            if not console.is_terminal and (job["step"], job["status"]) != (seen["step"], seen["status"]):
                # a CI log gets no live bar: one line per step instead
                console.print(f"{job['step']}/{job['total_steps'] or '?'} {_job_line(job)}")
    if job["status"] == JOB_SUCCEEDED:
        made = f": candidate v{job['candidate_version']} (accrete gate {job['candidate_version']} --wait)" \
            if job["candidate_version"] else "."
        print(f"Job {job_id} succeeded{made}")
        return 0
    print(f"Job {job_id} {job['status']}" + (f": {job['error']}" if job["error"] else "."), file=sys.stderr)
    return 1


def _job_line(job: dict) -> str:
    parts = [f"job {job['id']} {job['status']}"]
    if job["loss"] is not None:
        parts.append(f"loss {job['loss']:.4f}")
    if job["kl"] is not None:
        parts.append(f"KL {job['kl']:.4f}")
    if job["eta_seconds"] and job["status"] == "running":
        parts.append(f"~{job['eta_seconds'] / 60:.0f} min left")
    return escape(" · ".join(parts))  # plain text, never rich markup


def request(api: Api, args) -> int:
    """Ask for the promotion of a version that passed the gate; another skill owner decides."""
    made = api.promotion_request_create(args.version, args.comment)
    print(f"Promotion request {made['id']} for v{made['version']} ({made['skill']}) is {made['status']}: another "
          f"skill owner of {made['team']} decides it with `accrete approve {made['id']}`.")
    return 0


def requests(api: Api, args) -> int:
    """Promotion requests waiting for my decision (with --all: every open one of my teams)."""
    items = api.promotion_requests(awaiting_me=not args.all)
    if args.json:
        return _print_json(items)
    if not items:
        print("No promotion request is waiting for you." if not args.all else "No promotion request is open.")
        return 0
    _table(["id", "version", "skill", "team", "requested by", "comment"],
           [[r["id"], f"v{r['version']}", r["skill"], r["team"], r["requested_by"], r["comment"][:60]]
            for r in items])
    return 0


def approve(api: Api, args) -> int:
    """Approve (promoting the version to production) or, with --reject, reject a promotion request. The
    requester cannot decide their own request (four eyes): the API refuses it."""
    decided = api.promotion_decide(args.request, "reject" if args.reject else "approve", args.comment)
    version = api.version(decided["version"])
    print(f"Request {decided['id']} {decided['status']}: v{version['number']} ({version['skill']}) is now "
          f"{version['status'].replace('_', ' ')}.")
    return 0


def production(api: Api, args) -> int:
    """The production version and its manifest: base model, lineage, artifact paths and checksums."""
    current = api.production()
    if args.json:
        return _print_json(current)
    manifest = current["manifest"]
    adds = f", adds {current['skill']} ({current['team']})" if current["skill"] else " (the base model)"
    print(f"Production: v{current['number']}{adds}; promoted {current['promoted_at'] or 'at import'}.")
    base = manifest["base_model"]
    print(f"Base model: {base['name']} ({base['architecture'] or 'architecture unknown'}, context "
          f"{base['context_length']}), sha256 {base['sha256']}")
    print("Lineage: " + " → ".join(f"v{v['number']}" + (f" +{v['skill']}" if v["skill"] else " base")
                                   for v in manifest["lineage"]))
    print(f"Weights: {manifest['artifact_path']}" + (f", adapter {manifest['adapter_path']}"
                                                     if manifest["adapter_path"] else ""))
    checksums = manifest["checksums"] or {}
    if checksums:
        _table(["file", "sha256"], sorted(checksums.items()))
    else:
        print("Checksums: none recorded.")
    return 0


# --- output -------------------------------------------------------------------------------------------

def _print_json(document) -> int:
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def _table(headers: list[str], rows) -> None:
    table = Table(*headers, box=None, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*(Text("" if value is None else str(value)) for value in row))
    Console(highlight=False).print(table)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
