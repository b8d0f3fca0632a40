"""`accrete`: the Accrete platform from a terminal or a CI job, as a client of its HTTP API (/api/v1).

Configured by the environment: ACCRETE_URL (default http://127.0.0.1:8000) and ACCRETE_TOKEN (required: a
personal or service-account token, acc_…, from Settings → API tokens). Every role and team rule of the web
app applies to the token's user.

Exit codes: 0 success; 1 the server refused the request on its merits (an invalid file or config, a
duplicate, a refused transition), a job that failed, or a gate that blocked; 2 the request could not be
made (usage, ACCRETE_TOKEN missing or rejected, permission, not found, network, server error). `accrete
gate` has its own: 0 pass, 1 block, 2 anything else. Errors go to stderr: the API's `detail`, then
one line per problem (FILE:LINE: message — fix for a file, FIELD: message for a request field)."""

from __future__ import annotations

import argparse
import json
import sys

from accrete_cli import commands, export, gate
from accrete_cli.client import Api, ApiError, UsageError

USAGE_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with Api.from_env() as api:
            return args.run(api, args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except ApiError as exc:
        first, *rest = exc.explain()
        print(f"error: {first}", *rest, sep="\n", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def setting(text: str) -> tuple[str, object]:
    """--set key=value: the value as JSON when it parses (1e-4, 8, true, [1, 2]), else as the string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value (e.g. --set learning_rate=1e-4)")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def parser() -> argparse.ArgumentParser:
    intro, *rest = __doc__.split("\n\n")
    top = argparse.ArgumentParser(prog="accrete", description=intro.replace("`accrete`: t", "T"),
                                  epilog="\n\n".join(rest), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("skills", help="the skills of my teams")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(run=commands.skills)

    p = sub.add_parser("upload", help="validate a demonstrations file and save it as the skill's next set")
    p.add_argument("skill", help="the skill's slug")
    p.add_argument("file", help="JSONL or CSV demonstrations")
    p.add_argument("--eval", metavar="FILE", help="held-out eval cases (default: a split of FILE)")
    p.add_argument("--seed", type=int, help="the train/eval split's seed")
    p.add_argument("--dry-run", action="store_true", help="validate only; print the token `accrete confirm` takes")
    p.set_defaults(run=commands.upload)

    p = sub.add_parser("confirm", help="save an upload validated by `upload --dry-run`")
    p.add_argument("token", help="the pending upload's token")
    p.set_defaults(run=commands.confirm)

    p = sub.add_parser("train", help="queue a training job for a skill")
    p.add_argument("skill", help="the skill's slug")
    p.add_argument("--method", required=True, choices=["sdft", "sft"])
    p.add_argument("--set", type=setting, action="append", metavar="KEY=VALUE",
                   help="a TrainConfig field (repeatable); values parse as JSON, else as strings")
    p.add_argument("--demonstration-set", type=int, metavar="ID", help="default: the skill's latest set")
    p.add_argument("--watch", action="store_true", help="then follow the job (exit 0 succeeded, 1 failed)")
    p.add_argument("--json", action="store_true", help="print the queued job as JSON (for scripts: .id)")
    p.add_argument("--interval", type=positive, default=2.0, metavar="S", help="seconds between polls (default 2)")
    p.set_defaults(run=commands.train)

    p = sub.add_parser("jobs", help="the latest training jobs; `jobs watch ID` follows one")
    p.add_argument("--skill", help="only this skill's (slug)")
    p.add_argument("--status", choices=["validating", "queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(run=commands.jobs)
    watch = p.add_subparsers(dest="jobs_command", metavar="watch").add_parser(
        "watch", help="follow a job until it ends: exit 0 succeeded, 1 failed or cancelled")
    watch.add_argument("id", type=int)
    watch.add_argument("--interval", type=positive, default=2.0, metavar="S", help="seconds between polls (default 2)")
    watch.set_defaults(run=commands.jobs_watch)

    p = sub.add_parser("gate", help="a version's gate report; exit 0 pass, 1 block, 2 anything else",
                       description=gate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("version", type=version_number, help="the version's number (5 or v5)")
    p.add_argument("--wait", action="store_true", help="poll until the gate decides")
    p.add_argument("--timeout", type=positive, default=3600.0, metavar="S", help="with --wait: give up after S s (default 3600)")
    p.add_argument("--interval", type=positive, default=5.0, metavar="S", help="with --wait: seconds between polls (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON document, whatever the outcome")
    p.set_defaults(run=gate.gate)

    p = sub.add_parser("request", help="ask for the promotion of a version that passed the gate")
    p.add_argument("version", type=version_number)
    p.add_argument("--comment", default="")
    p.set_defaults(run=commands.request)

    p = sub.add_parser("requests", help="promotion requests waiting for my decision")
    p.add_argument("--all", action="store_true", help="every open request of my teams")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(run=commands.requests)

    p = sub.add_parser("approve", help="approve a promotion request (or --reject it)")
    p.add_argument("request", type=int, help="the request's id (`accrete requests` lists them)")
    p.add_argument("--reject", action="store_true")
    p.add_argument("--comment", default="")
    p.set_defaults(run=commands.approve)

    p = sub.add_parser("production", help="the production version and its manifest (checksums)")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(run=commands.production)

    p = sub.add_parser("export", help="a version as a Hugging Face folder (every file's sha256 checked)",
                       description=export.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("version", type=version_number, help="the version's number (5 or v5)")
    p.add_argument("dir", help="the folder to write (new or empty)")
    p.add_argument("--adapter", action="store_true", help="the LoRA adapter alone (and accrete.json)")
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    p.set_defaults(run=export.export)
    return top


def version_number(text: str) -> int:
    number = text.lower().removeprefix("v")
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number (e.g. 5 or v5)")
    return int(number)


if __name__ == "__main__":
    sys.exit(main())
