"""`accrete gate VERSION`: a candidate's gate report and an exit code a CI job can branch on.

    0  pass   — the gate passed it and it is awaiting approval, in production or retired
    1  block  — the gate blocked it
    2  error  — anything else: no such version (or not yours to see), its gate failed or has not decided
               (without --wait, or past --timeout), it went stale or was rejected, authentication, network

With --wait the version is polled until its gate decides. With --json stdout holds one JSON document —
{"version", "status", "verdict", "outcome", "exit_code", "error", "gate"} — whatever the API answered, so
a CI step can parse it before looking at the exit code (bad arguments or no ACCRETE_TOKEN stop before:
stderr only); `gate` is the API's report (rows, reasons, remedy, flipped cases) or null."""

from __future__ import annotations

import json
import sys
import time

from rich.console import Console
from rich.table import Table
from rich.text import Text

from accrete_cli.client import Api, ApiError, retrying

PASS, BLOCK, ERROR = 0, 1, 2
UNDECIDED = {"candidate", "evaluating"}
PASSED = {"awaiting_approval", "production", "retired"}


def gate(api: Api, args) -> int:
    document, version = gate_outcome(api, args.version, wait=args.wait, timeout=args.timeout,
                                     interval=args.interval)
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    elif document["gate"] is not None:
        _print_report(document["gate"], version)
    if document["error"]:
        print(f"error: {document['error']}", file=sys.stderr)
    return document["exit_code"]


def gate_outcome(api: Api, number: int, *, wait: bool, timeout: float, interval: float) -> tuple[dict, dict | None]:
    """The outcome document (see the module's docstring) and the version as last read (None if unread)."""
    document = {"version": number, "status": None, "verdict": None, "outcome": "error", "exit_code": ERROR,
                "error": None, "gate": None}
    version = None
    try:
        version = api.version(number)
        deadline = time.monotonic() + timeout
        while wait and version["status"] in UNDECIDED and time.monotonic() < deadline:
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
            version = retrying(lambda: api.version(number))
        status = document["status"] = version["status"]
        if status in UNDECIDED:
            document["error"] = (f"v{number} is still {status} after {timeout:g} s: its gate has not decided."
                                 if wait else f"v{number} is {status}: its gate has not decided yet (--wait waits "
                                 "for it).")
        elif status == "failed" or version["gate_verdict"] is None:
            document["error"] = (f"v{number}'s gate failed: {version['gate_error']}" if status == "failed"
                                 else f"v{number} has no gate result (it is {_words(status)}; a base version is "
                                 "not gated).")
        else:
            report = document["gate"] = api.gate(number)
            verdict = document["verdict"] = report["verdict"]
            if status == "blocked":
                document.update(outcome="block", exit_code=BLOCK)
            elif status in PASSED and verdict == "pass":
                document.update(outcome="pass", exit_code=PASS)
            else:
                document["error"] = f"v{number} had a {verdict} verdict but is {_words(status)}."
    except ApiError as exc:
        document["error"] = "\n".join(exc.explain())
    return document, version


def _print_report(report: dict, version: dict) -> None:
    skill = f" ({version['skill']}, {version['team']})" if version.get("skill") else ""
    print(f"v{report['candidate']}{skill} against v{report['baseline']}: {report['verdict'].upper()} — "
          f"{_words(version['status'])}")
    table = Table("suite", "before → after", "change", "tolerance", "n", "verdict", box=None, pad_edge=False,
                  header_style="bold")
    for row in report["rows"]:
        verdict = row["verdict"] + ("  (skill added)" if row.get("target") else "")
        table.add_row(*(Text(cell) for cell in (
            row["name"], f"{row['before']:.0%} → {row['after']:.0%}", f"{row['delta'] * 100:+.0f} pts",
            f"{row['tolerance']:.0%}", str(row.get("n") or ""), verdict)))
    Console(highlight=False).print(table)
    for warning in report.get("warnings", []):
        print(f"  warning: {warning['suite']}: {warning['warning']}")
    for reason in report["reasons"]:
        print(f"  blocked: {reason}")
    remedy = report.get("remedy")
    if remedy:
        print(f"  remedy: {remedy.get('action', '')}")
        if remedy.get("reason"):
            print(f"    why: {remedy['reason']}")
    dropped = sum(f.get("count", 1) for f in report.get("flipped", []) if f.get("direction") == "pass→fail")
    if dropped:
        print(f"  {dropped} case(s) flipped pass→fail: the version's page in the web app lists them.")


def _words(status: str) -> str:
    return status.replace("_", " ")
