"""Readiness of the demo skills: does the model, shown a demonstration in context, beat itself without?

For every skill in <data>/skills.json and every teacher style (inline, turn) this generates greedy
answers for the first N rows of the skill's JSONL and scores them against each row's reference:

- student        the prompt alone (what SDFT trains; style-independent)
- teacher/same   the teacher prompt with the row's own demonstration (the classic readiness check;
                 mostly measures copying)
- teacher/other  the teacher prompt with the demonstration of a *different* row of the file (the
                 example is not the answer: closer to what the student can learn and generalise)

SDFT only helps when the teacher clearly beats the student; the last lines give, per skill and style,
the verdict the product's readiness check would reach on teacher/same against student
(workers.engine.readiness.judge). Usage (2-core CPU: ~2-4 min for 3 skills):

    .venv/bin/python bench/demo_readiness.py --model /path/to/hf_model_dir \
        [--data skills/demo_data] [--skills slug,...] [--n 12] [--max-new-tokens 48] [--show 2]
    .venv/bin/python bench/demo_readiness.py --quick

--model is a Hugging Face folder (safetensors + tokenizer with a chat template), e.g. the folder that
workers.engine.model_io.import_gguf writes for SmolLM2-135M-Instruct. No model path is built in.
--quick instead runs the tiny random Llama of the tests (built in a temp dir) on 2 rows per skill with 8 new
tokens: seconds, what tests/test_bench_scripts.py runs; its verdicts say nothing about the skills.
The prompts, the greedy decoding and the scorers are the engine's own (workers.engine.contract.prompts,
workers.engine.generation, workers.engine.contract.scoring), so the bench measures what readiness
checks and training use.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from workers.engine.contract import scoring  # noqa: E402
from workers.engine.contract.prompts import student_messages, teacher_messages  # noqa: E402
from workers.engine.data import TrainRow  # noqa: E402
from workers.engine.generation import Generator  # noqa: E402
from workers.engine.readiness import judge  # noqa: E402


def load_rows(path: Path) -> list[TrainRow]:
    """The file's rows, prompt_jsonl ({prompt, demonstration}) or chat_jsonl ({messages} ending with the
    assistant's turn), each with an optional reference."""
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        if "messages" in raw:
            messages = raw["messages"]
            if not messages or messages[-1]["role"] != "assistant":
                raise ValueError(f"{path}:{line_no}: chat row must end with an assistant turn")
            prompt, demonstration = messages[:-1], messages[-1]["content"]
        else:
            prompt, demonstration = raw["prompt"], raw["demonstration"]
        rows.append(TrainRow(prompt=prompt, demonstration=demonstration, reference=raw.get("reference")))
    return rows


def reference_of(row: TrainRow) -> str:
    return row.reference if row.reference is not None else row.demonstration


def count_generation(generator: Generator) -> dict:
    """Wrap the model's generate() so the throughput line reports what the original bench did: seconds
    inside generate() and the tokens each answer took up to its stop token."""
    totals = {"new_tokens": 0, "seconds": 0.0}
    model_generate = generator.model.generate
    stops = set(generator.eos_token_ids)

    def generate(*, input_ids, **kwargs):
        start = time.perf_counter()
        output = model_generate(input_ids=input_ids, **kwargs)
        totals["seconds"] += time.perf_counter() - start
        for tokens in output[:, input_ids.shape[1]:].tolist():
            totals["new_tokens"] += next((i for i, token in enumerate(tokens) if token in stops), len(tokens))
        return output

    generator.model.generate = generate
    return totals


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="Hugging Face model folder (safetensors + tokenizer)")
    ap.add_argument("--quick", action="store_true",
                    help="smallest settings: the tests' tiny random Llama instead of --model, 2 rows, 8 new tokens")
    ap.add_argument("--data", default=str(REPO / "skills" / "demo_data"),
                    help="folder with skills.json and <slug>.jsonl (default: skills/demo_data)")
    ap.add_argument("--skills", default="", help="comma-separated slugs (default: all in skills.json)")
    ap.add_argument("--styles", default="inline,turn")
    ap.add_argument("--n", type=int, default=12, help="rows per skill (the first N of the file)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda")
    ap.add_argument("--show", type=int, default=0, help="print this many example outputs per condition")
    ap.add_argument("--json-out", default="", help="also write per-case results to this file")
    args = ap.parse_args(argv)
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="accrete-readiness-bench-") as scratch:
            from tests.fixtures.models import tiny_model_build, tokenizer_build

            args.model = str(tiny_model_build(Path(scratch) / "tiny", tokenizer_build(Path(scratch) / "tokenizer")))
            args.n, args.max_new_tokens = 2, 8
            return readiness(args)
    if not args.model:
        ap.error("--model is required (or --quick for the tiny random model)")
    return readiness(args)


def readiness(args) -> int:
    data = Path(args.data)
    skills = json.loads((data / "skills.json").read_text(encoding="utf-8"))
    if args.skills:
        wanted = args.skills.split(",")
        skills = [s for s in skills if s["slug"] in wanted]
    styles = [s for s in args.styles.split(",") if s]
    torch.set_num_threads(args.threads)
    generator = Generator(args.model, device=args.device)
    totals = count_generation(generator)
    print(f"scorer: workers.engine.contract.scoring; model: {args.model} on {generator.device}; n={args.n}; "
          f"max_new_tokens={args.max_new_tokens}")

    summary, cases = [], []
    for sk in skills:
        rows = load_rows(data / f"{sk['slug']}.jsonl")
        if len(rows) < 2:
            raise SystemExit(f"{sk['slug']}: need at least 2 rows")
        options = sk.get("scorer_options") or {}
        scoring.validate_options(sk["scorer"], options)
        n = min(args.n, len(rows))
        sel = rows[:n]
        # the "other" demonstration: a row outside the measured slice when the file is long enough
        other = [rows[(i + n) % len(rows)] if len(rows) > n else rows[(i + 1) % n] for i in range(n)]
        conds = {"student": [student_messages(r.prompt) for r in sel]}
        for st in styles:
            conds[f"teacher/same/{st}"] = [teacher_messages(r.prompt, r.demonstration, st) for r in sel]
            conds[f"teacher/other/{st}"] = [
                teacher_messages(r.prompt, o.demonstration, st) for r, o in zip(sel, other, strict=True)
            ]
        result = {"slug": sk["slug"], "n": n}
        for cname, convs in conds.items():
            outs = generator.generate(convs, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
            passed = 0
            for i, (r, out) in enumerate(zip(sel, outs, strict=True)):
                cs = scoring.score(sk["scorer"], out, reference_of(r), options)
                passed += bool(cs.passed)
                cases.append({"slug": sk["slug"], "condition": cname, "i": i, "output": out,
                              "reference": reference_of(r), "passed": bool(cs.passed)})
                if i < args.show:
                    print(f"  [{sk['slug']} {cname} #{i} {'PASS' if cs.passed else 'fail'}] {out!r}")
            result[cname] = passed
            print(f"{sk['slug']:<18} {cname:<20} {passed:>2}/{n}", flush=True)
        summary.append(result)

    rate = totals["new_tokens"] / totals["seconds"] if totals["seconds"] else 0.0
    print(f"\ngenerated {totals['new_tokens']} tokens in {totals['seconds']:.1f} s of generate() "
          f"({rate:.1f} new tokens/s, batch {args.batch_size}, {args.threads} thread(s))")
    header = ["skill", "student"] + [f"same/{s}" for s in styles] + [f"other/{s}" for s in styles]
    print(" | ".join(header))
    for r in summary:
        vals = [r["slug"], f"{r['student']}/{r['n']}"]
        vals += [f"{r[f'teacher/same/{s}']}/{r['n']}" for s in styles]
        vals += [f"{r[f'teacher/other/{s}']}/{r['n']}" for s in styles]
        print(" | ".join(vals))
    print("\nreadiness verdict (teacher/same against student):")
    for r in summary:
        for s in styles:
            verdict, message = judge(r[f"teacher/same/{s}"], r["student"], r["n"], s)
            print(f"{r['slug']:<18} {s:<7} {verdict}: {message}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summary": summary, "cases": cases}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
