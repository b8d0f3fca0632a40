"""Readiness of the demo skills: does the model, shown a demonstration in context, beat itself without?

For every skill in <data>/skills.json and every teacher style (inline, turn) this generates greedy
answers for the first N rows of the skill's JSONL and scores them against each row's reference:

- student        the prompt alone (what SDFT trains; style-independent)
- teacher/same   the teacher prompt with the row's own demonstration (the classic readiness check;
                 mostly measures copying)
- teacher/other  the teacher prompt with the demonstration of a *different* row of the file (the
                 example is not the answer: closer to what the student can learn and generalise)

SDFT only helps when the teacher clearly beats the student. Usage (2-core CPU: ~2-4 min for 3 skills):

    .venv/bin/python bench/demo_readiness.py --model /path/to/hf_model_dir \
        [--data skills/demo_data] [--skills slug,...] [--n 12] [--max-new-tokens 48] [--show 2]

--model is a Hugging Face folder (safetensors + tokenizer with a chat template), e.g. the folder that
workers.engine.model_io.import_gguf writes for SmolLM2-135M-Instruct. No model path is built in.
Scoring uses workers.engine.contract.scoring.score when that module exists, else the inline equivalents below.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

INLINE_TEMPLATE = (
    "{question}\n\nThis is an example for a response to the question:\n{demonstration}\n\n"
    "Now answer with a response of your own, including the thinking process."
)


# --------------------------------------------------------------------------- data and prompts
def load_rows(path: Path) -> list[dict]:
    """Rows as {prompt: [messages], demonstration: str, reference: str}."""
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        if "messages" in raw:
            msgs = raw["messages"]
            if not msgs or msgs[-1]["role"] != "assistant":
                raise ValueError(f"{path}:{line_no}: chat row must end with an assistant turn")
            prompt, demo = msgs[:-1], msgs[-1]["content"]
            ref = raw.get("reference", demo)
        else:
            prompt = [{"role": "user", "content": raw["prompt"]}]
            demo = raw["demonstration"]
            ref = raw.get("reference", demo)
        rows.append({"prompt": prompt, "demonstration": demo, "reference": ref})
    return rows


def teacher_messages(prompt: list[dict], demonstration: str, style: str) -> list[dict]:
    try:  # the engine's own builder, when it exists, so the bench measures what training uses
        from workers.engine.contract.prompts import teacher_messages as engine_teacher_messages

        return engine_teacher_messages(prompt, demonstration, style)
    except ImportError:
        pass
    question = prompt[-1]["content"]
    if style == "inline":
        text = INLINE_TEMPLATE.format(question=question, demonstration=demonstration)
        return prompt[:-1] + [{"role": "user", "content": text}]
    if style == "turn":
        return prompt[:-1] + [
            {"role": "user", "content": question},
            {"role": "assistant", "content": demonstration},
            {"role": "user", "content": question},
        ]
    raise ValueError(f"unknown teacher style {style!r}")


# --------------------------------------------------------------------------- scoring
@dataclass
class CaseScore:
    passed: bool
    score: float
    extracted: str | None
    detail: str


def _norm(s: str, case_sensitive: bool) -> str:
    s = " ".join(s.split())
    return s if case_sensitive else s.lower()


def _first_json_object(text: str):
    dec = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = dec.raw_decode(text[m.start():])
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _tokens(s: str) -> list[str]:
    return re.findall(r"\w+", s.lower())


def inline_score(kind: str, output: str, reference: str, options: dict) -> CaseScore:
    cs = bool(options.get("case_sensitive", False))
    out = output.strip()
    if kind == "exact":
        ok = _norm(out, cs) == _norm(reference, cs)
        return CaseScore(ok, float(ok), out, "")
    if kind == "contains":
        ok = _norm(reference, cs) in _norm(out, cs)
        return CaseScore(ok, float(ok), reference if ok else None, "")
    if kind == "regex":
        pat = options["pattern"].replace("{reference}", re.escape(reference))
        m = re.search(pat, out, 0 if cs else re.IGNORECASE)
        return CaseScore(bool(m), float(bool(m)), m.group(0) if m else None, pat)
    if kind == "json_fields":
        want = json.loads(reference)
        got = _first_json_object(out)
        if got is None:
            return CaseScore(False, 0.0, None, "no JSON object in output")
        fields = options.get("fields") or list(want)
        hits = [str(got.get(f, "")).strip().lower() == str(want[f]).strip().lower() for f in fields]
        frac = sum(hits) / len(fields)
        return CaseScore(all(hits), frac, json.dumps(got), f"{sum(hits)}/{len(fields)} fields")
    if kind == "numeric":
        nums = re.findall(r"-?\d+(?:\.\d+)?", out.replace(",", ""))
        tol = float(options.get("abs_tol", 1e-6))
        ok = bool(nums) and abs(float(nums[-1]) - float(reference)) <= tol
        return CaseScore(ok, float(ok), nums[-1] if nums else None, "")
    if kind == "multiple_choice":
        m = re.search(r"\b([A-E])\b", out)
        ok = bool(m) and m.group(1).upper() == reference.strip().upper()
        return CaseScore(ok, float(ok), m.group(1) if m else None, "")
    if kind == "token_f1":
        o, r = _tokens(out), _tokens(reference)
        common = sum(min(o.count(t), r.count(t)) for t in set(o))
        f1 = 0.0 if not common else 2 * common / (len(o) + len(r))
        return CaseScore(f1 >= float(options.get("threshold", 0.5)), f1, None, "")
    raise ValueError(f"inline scorer has no kind {kind!r}")


def get_scorer():
    try:
        from workers.engine.contract.scoring import score as engine_score

        return engine_score, "workers.engine.contract.scoring"
    except ImportError:
        return inline_score, "inline"


# --------------------------------------------------------------------------- generation
class Generator:
    def __init__(self, model_dir: str, threads: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.new_tokens = 0
        self.seconds = 0.0

    def __call__(self, conversations: list[list[dict]], max_new_tokens: int, batch_size: int) -> list[str]:
        outs = []
        for i in range(0, len(conversations), batch_size):
            texts = [
                self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                for c in conversations[i : i + batch_size]
            ]
            enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            t0 = time.perf_counter()
            with self.torch.no_grad():
                gen = self.model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False,
                    pad_token_id=self.tok.pad_token_id,
                )
            self.seconds += time.perf_counter() - t0
            new = gen[:, enc["input_ids"].shape[1]:]
            for row in new:
                ids = row.tolist()
                n = len(ids)
                for stop in (self.tok.eos_token_id, self.tok.pad_token_id):
                    if stop in ids:
                        n = min(n, ids.index(stop))
                self.new_tokens += n
                outs.append(self.tok.decode(ids[:n], skip_special_tokens=True))
        return outs


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="Hugging Face model folder (safetensors + tokenizer)")
    ap.add_argument("--data", default=str(REPO / "skills" / "demo_data"),
                    help="folder with skills.json and <slug>.jsonl (default: skills/demo_data)")
    ap.add_argument("--skills", default="", help="comma-separated slugs (default: all in skills.json)")
    ap.add_argument("--styles", default="inline,turn")
    ap.add_argument("--n", type=int, default=12, help="rows per skill (the first N of the file)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    ap.add_argument("--show", type=int, default=0, help="print this many example outputs per condition")
    ap.add_argument("--json-out", default="", help="also write per-case results to this file")
    args = ap.parse_args(argv)

    data = Path(args.data)
    skills = json.loads((data / "skills.json").read_text(encoding="utf-8"))
    if args.skills:
        wanted = args.skills.split(",")
        skills = [s for s in skills if s["slug"] in wanted]
    styles = [s for s in args.styles.split(",") if s]
    score, scorer_src = get_scorer()
    gen = Generator(args.model, args.threads)
    print(f"scorer: {scorer_src}; model: {args.model}; n={args.n}; max_new_tokens={args.max_new_tokens}")

    summary, cases = [], []
    for sk in skills:
        rows = load_rows(data / f"{sk['slug']}.jsonl")
        if len(rows) < 2:
            raise SystemExit(f"{sk['slug']}: need at least 2 rows")
        n = min(args.n, len(rows))
        sel = rows[:n]
        # the "other" demonstration: a row outside the measured slice when the file is long enough
        other = [rows[(i + n) % len(rows)] if len(rows) > n else rows[(i + 1) % n] for i in range(n)]
        conds = {"student": [r["prompt"] for r in sel]}
        for st in styles:
            conds[f"teacher/same/{st}"] = [teacher_messages(r["prompt"], r["demonstration"], st) for r in sel]
            conds[f"teacher/other/{st}"] = [
                teacher_messages(r["prompt"], o["demonstration"], st) for r, o in zip(sel, other, strict=True)
            ]
        result = {"slug": sk["slug"], "n": n}
        for cname, convs in conds.items():
            outs = gen(convs, args.max_new_tokens, args.batch_size)
            passed = 0
            for i, (r, out) in enumerate(zip(sel, outs, strict=True)):
                cs = score(sk["scorer"], out, r["reference"], sk.get("scorer_options") or {})
                passed += bool(cs.passed)
                cases.append({"slug": sk["slug"], "condition": cname, "i": i, "output": out,
                              "reference": r["reference"], "passed": bool(cs.passed)})
                if i < args.show:
                    print(f"  [{sk['slug']} {cname} #{i} {'PASS' if cs.passed else 'fail'}] {out!r}")
            result[cname] = passed
            print(f"{sk['slug']:<18} {cname:<20} {passed:>2}/{n}", flush=True)
        summary.append(result)

    rate = gen.new_tokens / gen.seconds if gen.seconds else 0.0
    print(f"\ngenerated {gen.new_tokens} tokens in {gen.seconds:.1f} s of generate() "
          f"({rate:.1f} new tokens/s, batch {args.batch_size}, {args.threads} thread(s))")
    header = ["skill", "student"] + [f"same/{s}" for s in styles] + [f"other/{s}" for s in styles]
    print(" | ".join(header))
    for r in summary:
        vals = [r["slug"], f"{r['student']}/{r['n']}"]
        vals += [f"{r[f'teacher/same/{s}']}/{r['n']}" for s in styles]
        vals += [f"{r[f'teacher/other/{s}']}/{r['n']}" for s in styles]
        print(" | ".join(vals))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summary": summary, "cases": cases}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
