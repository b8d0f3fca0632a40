"""Generation speed: every path that generates, as tokens/s and as a fraction of the machine's bound.

Decoding one token for a batch reads every weight once (and the KV cache so far), so on a CPU (and for
small batches on a GPU) a decoding step cannot be faster than bytes read / memory bandwidth. This bench
measures that bound on this machine first — the bandwidth from reading a large tensor, the bytes of
weights and KV cache per step — then the paths Accrete generates through, each at batch 1/4/16, prompts
of ~100 and ~500 tokens, 16/64/256 new tokens:

  rollouts   SDFT's on-policy samples inside a training step (TRL's generate with the student's LoRA merged)
  eval       the evaluation generator (greedy; the gate, probes, the SFT replay targets)
  readiness  the readiness check end to end (teacher and student answers + the demonstration log-probs)
  service    the inference service's batcher (workers/serving), in process, without HTTP

Decode rate = rows x (new - 1) / (time(new) - time(1)): the prompt's forward (compute-bound, not
bandwidth-bound) is timed apart and left out, so the fraction compares like with like. Every row is made
to generate exactly `new` tokens (EOS suppressed): a bench measures the rate, not how long answers are.
Last, where an SDFT step's time goes (rollouts, teacher forward, student forward+backward, optimizer).

    .venv/bin/python bench/generation.py                     # SmolLM2-135M-Instruct, the whole grid (~20 min)
    .venv/bin/python bench/generation.py --batches 4 --prompts 100 --new 64       # one cell per path
    .venv/bin/python bench/generation.py --tiny              # the tiny random Llama, seconds (the smoke test)
    .venv/bin/python bench/generation.py --random-size 1536x28   # a GPU machine: a realistic size, no hub
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sdft_vs_sft  # noqa: E402  (the model helpers and the SDFT step timers are shared)
import torch  # noqa: E402

from workers.engine.contract.config import TrainConfig  # noqa: E402
from workers.engine.data import TrainRow  # noqa: E402
from workers.engine.generation import Generator  # noqa: E402

PATHS = ("rollouts", "eval", "readiness", "service")
FILLER = ("The quarterly travel report lists every trip, its cost centre, the policy code that applied and "
          "the approver's name, so that finance can reconcile the claims against the budget. ")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --- the bound -----------------------------------------------------------------------------------------

def memory_bandwidth(mib: int, device: str) -> float:
    """Bytes/s reading a `mib` MiB float32 tensor (best of 10 full reductions, after a warm-up)."""
    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    x.sum()
    best = float("inf")
    for _ in range(10):
        _sync()
        start = time.perf_counter()
        x.sum()
        _sync()
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best


def weight_bytes(model) -> int:
    """Bytes of distinct parameter storage (a tied embedding/head counts once: the head reads it once)."""
    seen, total = set(), 0
    for param in model.parameters():
        key = param.data_ptr()
        if key not in seen:
            seen.add(key)
            total += param.numel() * param.element_size()
    return total


def kv_bytes_per_token(model) -> int:
    config = model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * next(model.parameters()).element_size()


def bound_tokens_per_second(bandwidth: float, model, batch: int, prompt: int, new: int) -> float:
    """Rows x steps/s if a step only read the weights and the batch's KV cache (average context)."""
    step_bytes = weight_bytes(model) + kv_bytes_per_token(model) * batch * (prompt + new / 2)
    return batch * bandwidth / step_bytes


# --- prompts of a given length ---------------------------------------------------------------------------

def prompt_of(tokenizer, tokens: int, index: int) -> list[dict]:
    """A user message whose chat-templated prompt is about `tokens` long (each one a little different)."""
    words = (f"Case {index}. " + FILLER * (1 + tokens // 20)).split(" ")
    low, high = 1, len(words)
    while low < high:  # the longest prefix that stays within `tokens`
        middle = (low + high + 1) // 2
        messages = [{"role": "user", "content": " ".join(words[:middle])}]
        if _templated_length(tokenizer, messages) <= tokens:
            low = middle
        else:
            high = middle - 1
    return [{"role": "user", "content": " ".join(words[:low])}]


def _templated_length(tokenizer, messages) -> int:
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"])


# --- the paths ------------------------------------------------------------------------------------------

class EvalPath:
    """The evaluation generator (Generator.generate), every row held to exactly `new` tokens."""

    name = "eval"

    def __init__(self, model_dir: Path):
        self.generator = Generator(model_dir)
        self.model, self.tokenizer = self.generator.model, self.generator.tokenizer

    def run(self, prompts: list[list[dict]], new: int) -> int:
        self.model.generation_config.min_new_tokens = new  # EOS is suppressed until `new` tokens
        try:
            self.generator.generate(prompts, max_new_tokens=new, batch_size=len(prompts))
        finally:
            self.model.generation_config.min_new_tokens = None
        return len(prompts) * new


class ReadinessPath(EvalPath):
    """The readiness check end to end on `batch` rows: teacher and student answers, then the log-probs of the
    demonstrations. The prompt length is the teacher's (the question + the demonstration in context)."""

    name = "readiness"

    def run(self, prompts: list[list[dict]], new: int) -> int:
        from workers.engine.readiness import readiness_check

        rows = []
        for messages in prompts:
            text = messages[0]["content"]
            half = len(text) // 2
            rows.append(TrainRow(prompt=text[:half], demonstration=text[half:]))
        self.model.generation_config.min_new_tokens = new
        try:
            readiness_check(self.generator, rows, "inline", "contains", n=len(rows), max_new_tokens=new,
                            batch_size=len(rows))
        finally:
            self.model.generation_config.min_new_tokens = None
        return 2 * len(prompts) * new  # a teacher and a student answer per row


class ServicePath:
    """The inference service's batcher: one batch of `batch` completions decoded together (no HTTP)."""

    name = "service"

    def __init__(self, model_dir: Path):
        from workers.serving.batching import Batcher, LoadedVersion

        self.version = LoadedVersion(1, Generator(model_dir))
        self.version.generator.eos_token_ids = []  # every row runs to max_tokens
        self.model = self.version.generator.model
        self.tokenizer = self.version.generator.tokenizer
        self.batcher = Batcher(max_batch=64, wait_s=0.0)

    def run(self, prompts: list[list[dict]], new: int) -> int:
        from workers.serving.batching import Completion

        generator = self.version.generator
        batch = []
        for messages in prompts:
            self.version.acquire()
            batch.append(Completion(version=self.version, prompt_ids=generator.prompt_ids(messages), max_tokens=new,
                                    emit=lambda item: None))
        finished = 0
        for completion, _ in self.batcher.decode(batch):
            completion.version.release()
            finished += len(completion.tokens)
        return finished


class RolloutPath:
    """SDFT's rollouts as a training step makes them: the engine's trainer, its generate (LoRA merged, TRL's
    sampling settings, temperature 1), the model in training mode."""

    name = "rollouts"

    def __init__(self, model_dir: Path, scratch: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from workers.engine import training
        from workers.engine.trainers import AccreteSDFTTrainer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        config = TrainConfig(method="sdft", batch_size=1, max_steps=1, max_completion_length=16, anchor_ratio=0.0, seed=0)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
        common = training._training_arguments(config, scratch / "rollouts", device, dtype, 1)
        rows = [TrainRow(prompt="Q?", demonstration="A.")]
        self.trainer = AccreteSDFTTrainer.build(
            model=model, tokenizer=self.tokenizer, rows=rows, config=config, common_args=common,
            max_prompt_length=4096, max_completion_length=16, resume_from=None)
        self.trainer.model.train()
        self.model = self.trainer.accelerator.unwrap_model(self.trainer.model)

    def run(self, prompts: list[list[dict]], new: int) -> int:
        trainer = self.trainer
        prompt_ids = trainer._tokenize_prompts(prompts)
        trainer.generation_config.max_new_tokens = new
        trainer.generation_config.min_new_tokens = new
        _, completions = trainer._generate(prompt_ids)
        return sum(len(ids) for ids in completions)


def build_path(name: str, model_dir: Path, scratch: Path):
    if name == "rollouts":
        return RolloutPath(model_dir, scratch)
    if name == "eval":
        return EvalPath(model_dir)
    if name == "readiness":
        return ReadinessPath(model_dir)
    return ServicePath(model_dir)


def timed(path, prompts, new: int) -> tuple[float, int]:
    _sync()
    start = time.perf_counter()
    tokens = path.run(prompts, new)
    _sync()
    return time.perf_counter() - start, tokens


def measure(path, prompts, first: float, new: int, repeats: int) -> dict:
    """One cell: `first` is the time of the same call with 1 new token (the prompts' forward and fixed costs)."""
    batch = len(prompts)
    runs = [timed(path, prompts, new) for _ in range(repeats)]
    seconds = statistics.median(run[0] for run in runs)
    tokens = runs[0][1]
    answers_per_row = round(tokens / (batch * new))  # readiness answers twice per row
    decode_seconds = max(seconds - first, 1e-9)  # what one more token per answer costs, prompts left out
    return {"seconds": seconds, "prompt_seconds": first, "tokens": tokens,
            "tokens_per_second": tokens / seconds,
            "decode_tokens_per_second": answers_per_row * batch * max(new - 1, 1) / decode_seconds}


def step_shares(model_dir: Path, scratch: Path, batch: int, new: int, steps: int) -> dict:
    """An SDFT run of `steps` steps through the engine, timed by phase (bench/sdft_vs_sft.py's timers)."""
    timers = sdft_vs_sft.Timers()
    sdft_vs_sft.instrument(timers)
    args = argparse.Namespace(batch_size=batch, steps=steps, max_completion_length=new)
    result = sdft_vs_sft.run_method("sdft", model_dir, sdft_vs_sft.bench_rows(max(8, batch)), args, scratch, timers)
    return result["phases"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(sdft_vs_sft.DEFAULT_MODEL), help="HF model folder (from the GGUF if absent)")
    parser.add_argument("--tokenizer", default=os.environ.get("ACCRETE_SMOLLM2_GGUF", str(sdft_vs_sft.DEFAULT_GGUF)))
    parser.add_argument("--tiny", action="store_true", help="the tiny random Llama, smallest grid (the smoke test)")
    parser.add_argument("--random-size", metavar="HIDDENxLAYERS", help="a random Llama, e.g. 1536x28")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--prompts", type=int, nargs="+", default=[100, 500], help="prompt tokens (about)")
    parser.add_argument("--new", type=int, nargs="+", default=[16, 64, 256], help="new tokens per row")
    parser.add_argument("--repeats", type=int, default=1, help="timings per cell (the median is printed)")
    parser.add_argument("--share-steps", type=int, default=3, help="SDFT steps for the time shares (0: skip)")
    parser.add_argument("--bandwidth-mib", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batches, args.prompts, args.new, args.bandwidth_mib, args.share_steps = [1, 4], [40], [4], 64, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    with tempfile.TemporaryDirectory(prefix="accrete-bench-generation-") as scratch_name:
        scratch = Path(scratch_name)
        model_dir = sdft_vs_sft.resolve_model(args, scratch)
        bandwidth = memory_bandwidth(args.bandwidth_mib, device)
        where = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU x{torch.get_num_threads()} threads"
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"model {model_dir}  {where}  load average {load:.2f}")
        print(f"memory bandwidth {bandwidth / 1e9:.1f} GB/s (reading a {args.bandwidth_mib} MiB tensor, best of 10)")
        results: dict[tuple, dict] = {}
        for name in args.paths:
            path = build_path(name, model_dir, scratch)
            model = path.model
            tokenizer = path.tokenizer
            if name == args.paths[0]:
                weights = weight_bytes(model)
                print(f"weights {weights / 2**20:.0f} MiB read per decoding step; KV cache "
                      f"{kv_bytes_per_token(model) / 1024:.1f} KiB per token of context")
                print(f"{'path':10s} {'batch':>5s} {'prompt':>6s} {'new':>4s} {'prefill s':>9s} {'total s':>8s} "
                      f"{'tok/s':>7s} {'decode tok/s':>12s} {'bound tok/s':>11s}  of the bound")
            for batch in args.batches:
                for prompt_tokens in args.prompts:
                    prompts = [prompt_of(tokenizer, prompt_tokens, index) for index in range(batch)]
                    timed(path, prompts, 1)  # warm-up: allocator, lazy kernels
                    first = statistics.median(timed(path, prompts, 1)[0] for _ in range(args.repeats))
                    for new in args.new:
                        cell = measure(path, prompts, first, new, args.repeats)
                        bound = bound_tokens_per_second(bandwidth, model, batch, prompt_tokens, new)
                        cell["bound"] = bound
                        results[(name, batch, prompt_tokens, new)] = cell
                        print(f"{name:10s} {batch:5d} {prompt_tokens:6d} {new:4d} {cell['prompt_seconds']:9.2f} "
                              f"{cell['seconds']:8.2f} {cell['tokens_per_second']:7.1f} "
                              f"{cell['decode_tokens_per_second']:12.1f} {bound:11.1f}  "
                              f"{100 * cell['decode_tokens_per_second'] / bound:5.1f} % of the bound", flush=True)
            del path
        again = memory_bandwidth(args.bandwidth_mib, device)
        print(f"memory bandwidth measured again after the grid: {again / 1e9:.1f} GB/s"
              + (" (higher: the fractions above are against the first measurement)" if again > bandwidth else ""))
        target = [cell for key, cell in results.items() if key[0] == "rollouts" and key[1] == 4]
        if target:
            fraction = statistics.median(c["decode_tokens_per_second"] / c["bound"] for c in target)
            print(f"rollouts at batch 4: {100 * fraction:.0f} % of the memory-bandwidth bound (median over "
                  f"{len(target)} cells; target >= 50 %)  {'OK' if fraction >= 0.5 else 'UNDER'}")
        if args.share_steps:
            phases = step_shares(model_dir, scratch, 4, 64 if not args.tiny else 4, args.share_steps)
            step = phases.get("training_step", 0.0) + phases.get("optimizer", 0.0)
            rollouts, teacher = phases.get("generation", 0.0), phases.get("teacher_forward", 0.0)
            student = phases.get("training_step", 0.0) - rollouts - teacher
            print(f"SDFT step ({args.share_steps} steps, batch 4): rollouts {100 * rollouts / step:.0f} %, teacher "
                  f"forward {100 * teacher / step:.0f} %, student forward+backward {100 * student / step:.0f} %, "
                  f"optimizer {100 * phases.get('optimizer', 0.0) / step:.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
