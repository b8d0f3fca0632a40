"""Benchmark: what retention anchoring buys — skill gained, probes kept, earlier skill kept — with seeds.

    .venv/bin/python bench/retention.py [--base DIR] [--seeds 0 1 2] [--skills acme-units ticket-routing]
        [--methods sdft sdft+anchors sft sft+anchors] [--sequence rehearse-anchor rehearse-demonstration]
        [--results var/bench/retention.jsonl] [--report-only]
    .venv/bin/python bench/retention.py --quick

Single step: for each skill, seed and method, one training run from the base model with the demo's
settings (platform/demo/settings.py; the engine's `train()`, the code a worker runs):
- sdft           plain SDFT (anchor_ratio 0: the paper's objective)
- sdft+anchors   retention-anchored SDFT (the demo's setting: one general anchor per skill row)
- sft            the demo's aggressive SFT
- sft+anchors    the same SFT with the same anchor mix, each anchor's target being the starting model's
                 own greedy answer (the classic replay baseline)
Two-skill sequence (--sequence): from each seed's sdft+anchors model of the first skill, the second
skill by anchored SDFT with the first skill's training rows rehearsed as plain anchors or as SDFT rows
with their demonstration.

Every model is scored as the gate scores it: each skill's held-out rows (the platform's own split of
the demo file: 20 of 100) and the retention probes the base model answers. The anchor pool never
overlaps the probes (tests/engine/test_anchors.py), and nothing here chooses settings.

Results append to --results as JSON lines, one per run, so an interrupted bench resumes where it
stopped and --report-only reprints the table. The report gives, per method, the mean over seeds with
a 95 % t-interval (few seeds: wide), every seed's value, and the paired difference anchored − plain
(same seed, same split). Run time on a 2-core CPU: ~10 min per skill and seed for the four methods,
~7 min per seed for the sequence.

--base defaults to the SmolLM2 the demo imported (var/artifacts/base/SmolLM2-135M-Instruct*). --quick runs
every method and both sequences on the tiny random Llama of the tests instead (built in a temp dir), one seed,
one training step of batch 2, results and models in the temp dir (under a minute): what
tests/test_bench_scripts.py runs; its numbers say nothing about retention.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "platform"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from demo.settings import DEMO  # noqa: E402  (pure Python)

DATA = REPO / "skills" / "demo_data"
METHODS = {
    "sdft": ("sdft", {**DEMO.sdft, "anchor_ratio": 0.0}),
    "sdft+anchors": ("sdft", DEMO.sdft),
    "sft": ("sft", DEMO.sft_aggressive),
    "sft+anchors": ("sft", {**DEMO.sft_aggressive, "anchor_ratio": DEMO.sdft["anchor_ratio"]}),
}
SEQUENCE = {"rehearse-anchor": "anchor", "rehearse-demonstration": "demonstration"}


def load_skill(slug: str):
    """The skill's spec, its training rows and held-out items, split exactly as the platform's upload does."""
    from skills.parsing import UploadLimits, iter_rows, split_rows, validate_upload
    from workers.engine.data import EvalItem, TrainRow

    spec = {s["slug"]: s for s in json.loads((DATA / "skills.json").read_text())}[slug]
    path = DATA / f"{slug}.jsonl"
    report = validate_upload(path, limits=UploadLimits(), count_tokens=None)
    rows = list(iter_rows(path, report.format))
    held_out = split_rows([r.content_hash for r in rows], seed=int(report.content_sha256[:7], 16))
    train = [TrainRow(prompt=r.prompt, demonstration=r.demonstration, reference=r.reference,
                      teacher_style=spec["teacher_style"]) for i, r in enumerate(rows) if i not in held_out]
    items = [EvalItem(case_id=f"{slug}-{r.line}", prompt=r.prompt, reference=r.reference)
             for i, r in enumerate(rows) if i in held_out]
    return spec, train, items


class Scorer:
    """Scores a model folder on every demo skill's held-out rows and on the probes."""

    def __init__(self, skills: dict):
        from workers.engine.contract.probes import load_probes
        from workers.engine.data import EvalItem

        self.skills = skills
        self.probes = [EvalItem(case_id=p.id, prompt=p.messages, reference=p.reference, scorer=p.scorer,
                                scorer_options=p.options) for p in load_probes()]

    def __call__(self, model_dir) -> dict:
        from workers.engine.contract.probes import PROBE_MAX_NEW_TOKENS
        from workers.engine.evaluation import evaluate
        from workers.engine.generation import Generator

        generator = Generator(model_dir)
        out = {"probes": [c.passed for c in evaluate(generator, self.probes, "exact", {},
                                                       max_new_tokens=PROBE_MAX_NEW_TOKENS, batch_size=16)]}
        for slug, (spec, _, items) in self.skills.items():
            results = evaluate(generator, items, spec["scorer"], spec.get("scorer_options", {}),
                               max_new_tokens=int(spec.get("max_new_tokens", 24)), batch_size=16)
            out[slug] = [c.passed for c in results]
        return out


def run(*, base, rows, method, overrides, seed, out_dir: Path, anchors=None):
    from workers.engine.contract.config import TrainConfig
    from workers.engine.training import train

    kind, settings = METHODS[method] if method in METHODS else ("sdft", DEMO.sdft)
    config = TrainConfig(method=kind, teacher_style=rows[0].teacher_style, seed=seed, **{**settings, **overrides})
    shutil.rmtree(out_dir, ignore_errors=True)
    work = out_dir.with_name(out_dir.name + "-work")
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.monotonic()
    result = train(base_dir=base, rows=rows, config=config, output_dir=out_dir, work_dir=work, anchors=anchors)
    shutil.rmtree(work, ignore_errors=True)
    return time.monotonic() - t0, result.metrics


def default_base() -> Path:
    found = sorted((REPO / "var" / "artifacts" / "base").glob("SmolLM2-135M-Instruct*"))
    if not found:
        raise SystemExit("No imported SmolLM2 under var/artifacts/base: run `make demo` once (or pass --base).")
    return found[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--skills", nargs="+", default=["acme-units", "ticket-routing"])
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS),
                    help="single-step methods to run (none: only the sequence)")
    ap.add_argument("--sequence", nargs="*", default=list(SEQUENCE), choices=list(SEQUENCE))
    ap.add_argument("--results", type=Path, default=REPO / "var" / "bench" / "retention.jsonl")
    ap.add_argument("--work", type=Path, default=REPO / "var" / "bench" / "retention")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="smallest settings: the tests' tiny random Llama, one seed, one step, all in a temp dir")
    args = ap.parse_args()
    args.overrides = {}
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="accrete-retention-bench-") as scratch:
            from tests.fixtures.models import tiny_model_build, tokenizer_build

            scratch = Path(scratch)
            args.base = tiny_model_build(scratch / "tiny", tokenizer_build(scratch / "tokenizer"))
            args.results, args.work, args.seeds = scratch / "retention.jsonl", scratch / "work", [0]
            args.overrides = {"max_steps": 1, "batch_size": 2}
            bench(args)
        return
    bench(args)


def bench(args) -> None:
    args.results.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.results.exists():
        for line in args.results.read_text().splitlines():
            record = json.loads(line)
            done[record["key"]] = record
    if not args.report_only:
        measure(args, done)
    report(done, args)


def measure(args, done: dict) -> None:
    from workers.engine.contract.anchors import load_anchor_pool
    from workers.engine.data import TrainRow

    base = args.base or default_base()
    skills = {slug: load_skill(slug) for slug in args.skills}
    scorer = Scorer(skills)

    def record(key: str, **fields) -> dict:
        entry = {"key": key, **fields}
        done[key] = entry
        with args.results.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        return entry

    if "start" not in done:
        record("start", scores=scorer(base))
        print("start: scored the base model", flush=True)
    for seed in args.seeds:
        for slug in args.skills:
            for method in args.methods:
                key = f"single/{slug}/{method}/{seed}"
                if key in done:
                    continue
                out = args.work / f"{slug}-{method}-s{seed}"
                seconds, metrics = run(base=base, rows=skills[slug][1], method=method, overrides=args.overrides, seed=seed,
                                       out_dir=out)
                record(key, seconds=round(seconds, 1), scores=scorer(out), mean_kl=metrics.get("mean_kl"))
                print(f"{key}: {seconds:.0f} s", flush=True)
                if not (method == "sdft+anchors" and slug == args.skills[0]):
                    shutil.rmtree(out, ignore_errors=True)  # only the sequence's starting models are kept
        if len(args.skills) < 2:
            continue
        first, second = args.skills[0], args.skills[1]
        start = args.work / f"{first}-sdft+anchors-s{seed}"
        for name in args.sequence:
            key = f"sequence/{second}/{name}/{seed}"
            if key in done or not (start / "accrete.json").exists():
                continue
            pool = [TrainRow.anchor(p) for p in load_anchor_pool().prompts]
            rehearsed = [TrainRow.anchor(r.prompt) if SEQUENCE[name] == "anchor" else r for r in skills[first][1]]
            out = args.work / f"seq-{second}-{name}-s{seed}"
            seconds, metrics = run(base=start, rows=skills[second][1], method=name, overrides=args.overrides, seed=seed,
                                   out_dir=out, anchors=pool + rehearsed)
            record(key, seconds=round(seconds, 1), scores=scorer(out), start=done[f"single/{first}/sdft+anchors/{seed}"]["scores"])
            print(f"{key}: {seconds:.0f} s", flush=True)
            shutil.rmtree(out, ignore_errors=True)


def report(done: dict, args) -> None:
    from workers.engine.contract.intervals import paired_difference_interval

    if "start" not in done:
        print("no results yet")
        return
    start = done["start"]["scores"]
    counted = [i for i, ok in enumerate(start["probes"]) if ok]

    def kept(scores) -> int:
        return sum(scores["probes"][i] for i in counted)

    def pct(values) -> str:
        return " ".join(f"{v:.0f}" for v in values)

    def mean_ci(values, baseline=None, bounds=None) -> str:
        """Mean over seeds with a 95 % t-interval (paired against `baseline` per seed when given), clipped to
        what the quantity can be."""
        iv = paired_difference_interval(baseline if baseline is not None else [0.0] * len(values), values,
                                        bounds=bounds)
        if len(values) < 2:
            return f"{iv.mean:+.1f}" if baseline is not None else f"{iv.mean:.1f}"
        sign = "+" if baseline is not None else ""
        return f"{iv.mean:{sign}.1f} [{iv.low:{sign}.1f}, {iv.high:{sign}.1f}]"

    print(f"\nRetention bench — base answers {len(counted)}/{len(start['probes'])} probes (these count); "
          "skill scores in % of 20 held-out rows; mean over seeds [95 % t-interval]; per-seed values after |")
    for slug in args.skills:
        base_skill = 100 * sum(start[slug]) / len(start[slug])
        print(f"\n{slug} (base {base_skill:.0f}%)")
        print(f"  {'method':<14}{'seeds':>6}  {'skill gain (points)':<36}{'probes kept (of ' + str(len(counted)) + ')':<28}")
        by_method = {}
        for method in METHODS:
            runs = [done[k] for k in sorted(done) if k.startswith(f"single/{slug}/{method}/")]
            if not runs:
                continue
            seeds = [int(r["key"].rsplit("/", 1)[1]) for r in runs]
            gains = [100 * sum(r["scores"][slug]) / len(r["scores"][slug]) - base_skill for r in runs]
            kepts = [kept(r["scores"]) for r in runs]
            by_method[method] = dict(zip(seeds, zip(gains, kepts, strict=True), strict=True))
            gain_ci = mean_ci(gains, bounds=(-base_skill, 100 - base_skill))
            kept_ci = mean_ci(kepts, bounds=(0, len(counted)))
            print(f"  {method:<14}{len(runs):>6}  {gain_ci:<22}| {pct(gains):<12}{kept_ci:<20}| {pct(kepts)}")
        for anchored, plain in (("sdft+anchors", "sdft"), ("sft+anchors", "sft")):
            if anchored in by_method and plain in by_method:
                common = sorted(set(by_method[anchored]) & set(by_method[plain]))
                if common:
                    gain = mean_ci([by_method[anchored][s][0] for s in common], [by_method[plain][s][0] for s in common],
                                   bounds=(-100, 100))
                    keep = mean_ci([by_method[anchored][s][1] for s in common], [by_method[plain][s][1] for s in common],
                                   bounds=(-len(counted), len(counted)))
                    print(f"  paired {anchored} − {plain} over seeds {common}: skill {gain} points, probes kept {keep}")
                    # the same difference paired per case (each probe in each seed), which also counts how
                    # many cases moved: tighter than over three seeds, blind to seed-to-seed variation
                    runs = {m: {int(k.rsplit("/", 1)[1]): done[k]["scores"] for k in done
                                if k.startswith(f"single/{slug}/{m}/")} for m in (anchored, plain)}
                    for what, key, cases in (("skill", slug, range(len(start[slug]))), ("probes kept", "probes", counted)):
                        before = [float(runs[plain][s][key][i]) for s in common for i in cases]
                        after = [float(runs[anchored][s][key][i]) for s in common for i in cases]
                        iv = paired_difference_interval(before, after, bounds=(-1.0, 1.0))
                        print(f"    paired per case and seed ({iv.n} pairs): {what} {iv.mean * 100:+.1f} points "
                              f"[{iv.low * 100:+.1f}, {iv.high * 100:+.1f}]")
    sequence = [done[k] for k in sorted(done) if k.startswith("sequence/")]
    if sequence:
        first, second = args.skills[0], args.skills[1]
        print(f"\nTwo-skill sequence: {second} by anchored SDFT on top of each seed's anchored {first} model")
        print(f"  {'rehearsal':<24}{'seed':>5}  {second:>16}  {first + ' (before → after)':>30}  probes kept (before → after)")
        for r in sequence:
            name, seed = r["key"].split("/")[2], r["key"].rsplit("/", 1)[1]
            s, b = r["scores"], r["start"]
            def p(x, slug):
                return f"{100 * sum(x[slug]) / len(x[slug]):.0f}%"
            print(f"  {name:<24}{seed:>5}  {p(b, second) + ' → ' + p(s, second):>16}  "
                  f"{p(b, first) + ' → ' + p(s, first):>30}  {kept(b)} → {kept(s)} of {len(counted)}")


if __name__ == "__main__":
    main()
