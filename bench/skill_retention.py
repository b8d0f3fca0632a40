"""Benchmark: what a training run buys on its skill and costs on the retention probes, SDFT beside SFT.

    .venv/bin/python bench/skill_retention.py --base DIR --skill acme-units \
        [--methods sdft sft] [--sdft-lr 1e-3] [--sft-lr 2e-3] [--steps 32] [--every 8] \
        [--also SLUG] [--skip 0] [--data skills/demo_data]
    .venv/bin/python bench/skill_retention.py --quick

For each method it trains one LoRA run on the skill's demonstrations (the engine's `train()`, the same
code a worker runs) with a checkpoint every --every steps, then scores each checkpoint, merged into
the base weights, on (a) the skill's held-out rows, (b) --also, another skill's rows (to see whether
an earlier skill survives), and (c) the 53 retention probes, counting only those the starting model
answers correctly, as the gate does. It prints one line per checkpoint:

    method  step  skill x/10  also y/10  probes kept k/n

--base is a Hugging Face folder, e.g. the one `import_base_model` writes under var/artifacts/base/
(SmolLM2-135M-Instruct). The held-out rows are the first --n-eval of the skill's file after a seeded
shuffle (seed 0), the rest train. The demo's settings are the defaults. Run time on a 2-core CPU:
~3 min per SDFT run of 32 steps plus ~20 s per scored checkpoint; SFT runs take ~1 min.

--quick: the smallest settings on the tiny random Llama of the tests (built in a temp dir) instead of
--base: acme-units with ticket-routing as --also, 4 held-out rows each, 2 steps, one checkpoint per
method (seconds), what tests/test_bench_scripts.py runs; its numbers say nothing about forgetting.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_skill(data: Path, slug: str, n_eval: int):
    from workers.engine.data import EvalItem, TrainRow

    specs = {spec["slug"]: spec for spec in json.loads((data / "skills.json").read_text())}
    if slug not in specs:
        raise SystemExit(f"{data / 'skills.json'} has no skill {slug!r}; it has {', '.join(specs)}")
    spec = specs[slug]
    rows = [json.loads(line) for line in (data / f"{slug}.jsonl").read_text().splitlines() if line.strip()]
    random.Random(0).shuffle(rows)
    held_out, train_rows = rows[:n_eval], rows[n_eval:]
    items = [EvalItem(case_id=f"{slug}-{i}", prompt=r["prompt"], reference=r["reference"]) for i, r in enumerate(held_out)]
    rows = [TrainRow(prompt=r["prompt"], demonstration=r["demonstration"], reference=r["reference"]) for r in train_rows]
    return spec, rows, items


def score(generator, spec, items, max_new_tokens: int) -> int:
    from workers.engine.evaluation import evaluate

    results = evaluate(generator, items, spec["scorer"], spec.get("scorer_options", {}), max_new_tokens=max_new_tokens)
    return sum(case.passed for case in results)


class KeepCheckpoints:
    """A TrainingObserver that copies every checkpoint aside (the trainer keeps only the newest two)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_checkpoint(self, step: int, path: str) -> None:
        shutil.copytree(path, self.folder / f"{step:06d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="Hugging Face model folder to start from")
    ap.add_argument("--skill")
    ap.add_argument("--also", default=None, help="another skill whose held-out rows are scored too")
    ap.add_argument("--data", default=str(REPO / "skills" / "demo_data"))
    ap.add_argument("--methods", nargs="+", default=["sdft", "sft"], choices=["sdft", "sft"])
    ap.add_argument("--sdft-lr", type=float, default=1e-3)
    ap.add_argument("--sft-lr", type=float, default=2e-3)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--skip", type=int, default=0, help="SDFT num_loss_tokens_to_skip (the paper: 3)")
    ap.add_argument("--n-eval", type=int, default=10)
    ap.add_argument("--anchor-ratio", type=float, default=0.0,
                    help="SDFT retention anchors per skill row (0: the paper's SDFT, as this bench has always run)")
    ap.add_argument("--quick", action="store_true",
                    help="smallest settings: the tests' tiny random Llama instead of --base, 2 steps, 4 rows scored")
    args = ap.parse_args()
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="accrete-skill-retention-bench-") as scratch:
            from tests.fixtures.models import tiny_model_build, tokenizer_build

            args.base = str(tiny_model_build(Path(scratch) / "tiny", tokenizer_build(Path(scratch) / "tokenizer")))
            args.skill, args.also = args.skill or "acme-units", args.also or "ticket-routing"
            args.steps, args.every, args.n_eval = 2, 2, 4
            bench(args)
        return
    if not (args.base and args.skill):
        ap.error("--base and --skill are required (or --quick for the tiny random model)")
    bench(args)


def bench(args) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.engine.contract.config import TrainConfig
    from workers.engine.contract.probes import PROBE_MAX_NEW_TOKENS, load_probes
    from workers.engine.data import EvalItem
    from workers.engine.evaluation import evaluate
    from workers.engine.generation import Generator
    from workers.engine.training import train

    data = Path(args.data)
    spec, rows, items = load_skill(data, args.skill, args.n_eval)
    also = load_skill(data, args.also, args.n_eval) if args.also else None
    max_new = int(spec.get("max_new_tokens", 24))
    probes = [EvalItem(case_id=p.id, prompt=p.messages, reference=p.reference, scorer=p.scorer,
                       scorer_options=p.options) for p in load_probes()]

    def measure(generator) -> tuple[int, int | None, list[bool]]:
        probe_results = evaluate(generator, probes, "exact", {}, max_new_tokens=PROBE_MAX_NEW_TOKENS)
        also_score = score(generator, also[0], also[2], max_new) if also else None
        return score(generator, spec, items, max_new), also_score, [case.passed for case in probe_results]

    start_skill, start_also, start_probes = measure(Generator(args.base))
    counted = [i for i, ok in enumerate(start_probes) if ok]
    also_txt = f"  also {start_also}/{args.n_eval}" if also else ""
    print(f"start  step   0  skill {start_skill}/{len(items)}{also_txt}  probes {len(counted)}/{len(probes)} "
          "answered (these count)", flush=True)

    tokenizer = AutoTokenizer.from_pretrained(args.base)
    for method in args.methods:
        lr = args.sdft_lr if method == "sdft" else args.sft_lr
        extra = {"num_loss_tokens_to_skip": args.skip, "anchor_ratio": args.anchor_ratio} if method == "sdft" else {}
        config = TrainConfig(method=method, teacher_style=spec["teacher_style"], learning_rate=lr,
                             max_steps=args.steps, checkpoint_every=args.every, **extra)
        with tempfile.TemporaryDirectory(prefix="accrete-bench-") as tmp:
            kept_dir = Path(tmp) / "kept"
            kept_dir.mkdir()

            t0 = time.monotonic()
            train(base_dir=args.base, rows=rows, config=config, output_dir=Path(tmp) / "out",
                  work_dir=Path(tmp) / "work", observer=KeepCheckpoints(kept_dir))
            print(f"{method:<5}  trained {args.steps} steps at lr {lr:g} in {time.monotonic() - t0:.0f} s", flush=True)
            for checkpoint in sorted(kept_dir.iterdir()):
                model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(args.base), str(checkpoint))
                skill_ok, also_ok, probe_ok = measure(Generator.from_model(model.merge_and_unload(), tokenizer))
                kept = sum(probe_ok[i] for i in counted)
                also_txt = f"  also {also_ok}/{args.n_eval}" if also else ""
                print(f"{method:<5}  step {int(checkpoint.name):3d}  skill {skill_ok}/{len(items)}{also_txt}  "
                      f"probes kept {kept}/{len(counted)} ({kept / max(len(counted), 1):.0%})", flush=True)


if __name__ == "__main__":
    main()
