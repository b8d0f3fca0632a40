"""Train a LoRA adapter on a base model with SDFT (or the SFT baseline) and write the candidate.

Reads top to bottom: lengths and limits -> dataset -> trainer (TRL's SDFTTrainer / SFTTrainer with
two small extensions) -> train (resuming from work_dir) -> one atomic output directory holding the
adapter, the merged weights and accrete.json (config, metrics, checksums).

The same function runs in each rank of a data-parallel job (workers.engine.distributed launches them): the
scaling then splits every batch across the ranks, and rank 0 alone writes the candidate.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

# TRL warns on every import of an experimental module; the version is pinned, so the warning is noise.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    PrinterCallback,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from workers.engine.artifacts import atomic_directory, sha256_tree  # noqa: E402
from workers.engine.contract.config import MAX_DERIVED_COMPLETION_LENGTH, TrainConfig  # noqa: E402
from workers.engine.contract.scaling import SETTING, Scaling, ScalingError  # noqa: E402
from workers.engine.data import DataTooLongError, RowLengths, TrainRow, measure_lengths  # noqa: E402
from workers.engine.device import PeakMemoryMeter, resolve_device, resolve_dtype  # noqa: E402
from workers.engine.trainers import (  # noqa: E402
    STUDENT_ADAPTER,
    TEACHER_ADAPTER,
    AccreteSDFTTrainer,
    AccreteSFTTrainer,
)


class TrainingCancelled(Exception):
    """The observer asked to stop; nothing was written to output_dir."""


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    loss: float | None
    kl: float | None  # SDFT's forward KL(teacher || student); None for SFT
    learning_rate: float | None
    tokens_per_second: float
    eta_seconds: float | None
    peak_memory_bytes: int
    epoch: float | None


class TrainingObserver:
    """What a caller (the Celery task) can hook into; every method is optional."""

    def on_progress(self, progress: Progress) -> None:
        pass

    def should_cancel(self) -> bool:
        return False

    def on_checkpoint(self, step: int, path: str) -> None:
        pass


@dataclass(frozen=True)
class TrainResult:
    output_dir: str
    steps: int
    metrics: dict
    checksums: dict
    config: dict = field(default_factory=dict)


def train(
    *,
    base_dir: str | Path,
    rows: list[TrainRow],
    config: TrainConfig,
    output_dir: str | Path,
    work_dir: str | Path,
    observer: TrainingObserver | None = None,
    anchors: list[TrainRow] | None = None,
    scaling: Scaling | None = None,
) -> TrainResult:
    """Run one training job. Resumes from the newest checkpoint in work_dir when there is one.

    base_dir is only read. output_dir appears complete or not at all. work_dir holds checkpoints
    and is left for the caller to delete (it is what makes a retried job resume). `anchors` is the
    retention pool (plain anchors and rehearsed rows of earlier skills); None with anchoring on means
    the shipped general pool. `scaling` with more than one process, DeepSpeed or vLLM is for a rank that
    workers.engine.distributed started; other ranks return a result without checksums.
    """
    observer = observer or TrainingObserver()
    scaling = scaling or Scaling()
    _check_launched(scaling)
    output_dir, work_dir = Path(output_dir), Path(work_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; a candidate's directory is written once")
    examples_per_step = config.batch_size * config.gradient_accumulation_steps
    if len(rows) < examples_per_step:
        raise ValueError(
            f"{len(rows)} training rows but one optimizer step takes batch_size x gradient_accumulation_steps = "
            f"{examples_per_step}; add rows or lower batch_size"
        )
    skill_anchors = [index for index, row in enumerate(rows) if row.is_anchor]
    if skill_anchors:
        raise ValueError(f"training row {skill_anchors[0]} has no demonstration; anchors go in `anchors`, not `rows`")
    anchors = resolve_anchors(config, anchors)
    scaling.per_process(config.batch_size, config.anchors_per_step if anchors else 0)
    _check_zero3(scaling, config)

    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_config = json.loads((Path(base_dir) / "config.json").read_text())
    context_length = model_config.get("max_position_embeddings") or tokenizer.model_max_length
    total_steps = config.total_steps(len(rows))
    if anchors and config.method == "sft":
        anchors = replay_targets(base_dir, anchors, config, total_steps, len(rows))
    lengths = measure_lengths(tokenizer, rows + anchors, config.teacher_style)
    prompt_limit, completion_limit = resolve_lengths(config, lengths, context_length,
                                                     extra_completion=config.anchor_max_new_tokens if anchors else 0)

    common = _training_arguments(config, work_dir, device, dtype, total_steps, scaling)
    # ZeRO-3 shards the weights as they load, which only happens while a DeepSpeed TrainingArguments is alive.
    zero3_arguments = TrainingArguments(**common) if scaling.zero_stage == 3 else None  # noqa: F841
    set_seed(config.seed)  # the LoRA initialisation is random; fix it before the adapter exists
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    work_dir.mkdir(parents=True, exist_ok=True)
    resume_from = last_checkpoint(work_dir)
    shared = {"model": model, "tokenizer": tokenizer, "rows": rows, "config": config, "common_args": common,
              "anchors": anchors, "ranks": scaling.processes}
    if config.method == "sdft":
        # vLLM only generates, and only SDFT generates: SFT ignores the setting.
        trainer = AccreteSDFTTrainer.build(
            **{**shared, "common_args": {**common, **_vllm_arguments(scaling)}}, max_prompt_length=prompt_limit,
            max_completion_length=completion_limit, resume_from=resume_from,
            anchor_completion_length=config.anchor_max_new_tokens)
    else:
        trainer = AccreteSFTTrainer.build(**shared)

    trainer.remove_callback(PrinterCallback)  # progress goes to the observer, not stdout
    reporter = _ProgressReporter(observer, total_steps, device, lambda: trainer.tokens_seen)
    trainer.add_callback(reporter)
    reporter.meter.start()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        peak = reporter.meter.stop()
    if reporter.cancelled:
        raise TrainingCancelled(f"cancelled at step {trainer.state.global_step} of {total_steps}")

    metrics = reporter.summary(trainer.state.global_step, peak)
    metrics.update(
        max_prompt_length=prompt_limit,
        max_completion_length=completion_limit,
        num_rows=len(rows),
        anchor_rows=len(anchors),
        anchors_per_step=config.anchors_per_step if anchors else 0,
        resumed_from_step=reporter.first_step - 1 if resume_from else None,
    )
    if scaling.processes > 1:
        metrics["processes"] = scaling.processes
    snapshot = config.to_dict()
    model = trainer.accelerator.unwrap_model(trainer.model)
    if scaling.zero_stage == 3:
        model = _gathered_student(trainer, model, base_dir, dtype, config)  # every rank takes part; rank 0 gets it
    checksums = {}
    if trainer.is_world_process_zero():
        checksums = write_candidate(model, tokenizer, output_dir, snapshot, metrics, base_dir)
    return TrainResult(
        output_dir=str(output_dir), steps=trainer.state.global_step, metrics=metrics, checksums=checksums, config=snapshot
    )


def resolve_anchors(config: TrainConfig, anchors: list[TrainRow] | None) -> list[TrainRow]:
    """The anchor rows this run mixes in: none when anchoring is off, the shipped pool when not given."""
    if config.anchors_per_step == 0:
        return []
    if anchors is None:
        from workers.engine.contract.anchors import load_anchor_pool

        anchors = [TrainRow.anchor(prompt) for prompt in load_anchor_pool().prompts]
    if not anchors:
        raise ValueError(f"anchor_ratio={config.resolved_anchor_ratio} mixes anchors into every step, but the "
                         "anchor pool is empty; pass anchors or set anchor_ratio=0 (paper-pure SDFT)")
    return list(anchors)


def replay_targets(base_dir, anchors: list[TrainRow], config: TrainConfig, total_steps: int, n_skill: int
                   ) -> list[TrainRow]:
    """The replay baseline for SFT: each anchor the run will draw, answered greedily by the starting model
    (rehearsed rows keep their demonstration). Only the drawn anchors are answered: generation is the
    slow part on a CPU."""
    from workers.engine.generation import Generator
    from workers.engine.trainers import MixedBatchSampler

    sampler = MixedBatchSampler.for_config(config, n_skill=n_skill, n_anchor=len(anchors), steps=total_steps, repeat=1)
    drawn = sorted({index - n_skill for index in sampler if index >= n_skill})
    chosen = [anchors[index] for index in drawn]
    plain = [row for row in chosen if row.is_anchor]
    answers = iter(Generator(base_dir, device=config.device, dtype=config.dtype).generate(
        [row.prompt for row in plain], max_new_tokens=config.anchor_max_new_tokens, batch_size=16) if plain else [])
    replayed = []
    for row in chosen:
        if row.is_anchor:
            answer = next(answers)
            if answer.strip():  # an empty greedy answer has nothing to replay
                replayed.append(TrainRow(prompt=row.prompt, demonstration=answer))
        else:
            replayed.append(row)
    return replayed


def resolve_lengths(config: TrainConfig, lengths: RowLengths, context_length: int, extra_completion: int = 0
                    ) -> tuple[int, int]:
    """Return (max_prompt_length, max_completion_length), refusing data TRL would silently truncate.

    TRL left-truncates the *teacher* prompt to max_prompt_length too, which would cut off the start of
    the question or the demonstration, so the limit comes from the longest teacher prompt.
    `extra_completion` is the anchors' rollout length: a batch with anchors generates that far.
    """
    completion = config.max_completion_length or min(
        math.ceil(1.25 * lengths.longest_demonstration), MAX_DERIVED_COMPLETION_LENGTH
    )
    if config.method == "sft":
        if lengths.longest_sft_sequence > context_length:
            raise DataTooLongError(
                f"row {lengths.longest_sft_row}: prompt + demonstration is {lengths.longest_sft_sequence} tokens "
                f"but the model's context is {context_length}; shorten that row"
            )
        return lengths.longest_sft_sequence, completion
    prompt = config.max_prompt_length or lengths.longest_teacher_prompt
    row, teacher = lengths.longest_teacher_row, lengths.longest_teacher_prompt
    if teacher > prompt:
        raise DataTooLongError(
            f"row {row}: the teacher prompt (prompt + demonstration, {config.teacher_style} style) is {teacher} tokens "
            f"but max_prompt_length is {prompt}; it would be truncated and the teacher would not see it all. "
            f"Set max_prompt_length >= {teacher} (or leave it unset) or shorten that row"
        )
    if prompt + max(completion, extra_completion) > context_length:
        raise DataTooLongError(
            f"row {row}: the teacher prompt is {teacher} tokens and the completion budget is {completion} tokens, "
            f"{prompt + completion} in all, but the model's context is {context_length}. "
            f"Shorten that row's prompt or demonstration, or lower max_completion_length"
        )
    return prompt, completion


def last_checkpoint(work_dir: Path) -> Path | None:
    """Newest complete checkpoint (trainer_state.json is written last) in work_dir, if any."""
    found = []
    for path in work_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and (path / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def _check_launched(scaling: Scaling) -> None:
    """A scaled run is one rank of a process group; called in a plain process it would train alone on a
    fraction of the batch."""
    if not scaling.launches:
        return
    world = int(os.environ.get("WORLD_SIZE", "0"))
    if world != scaling.processes:
        raise ScalingError(f"this train() is one of {scaling.processes} ranks ({SETTING['processes']}="
                           f"{scaling.processes}, {SETTING['strategy']}={scaling.strategy}, {SETTING['vllm']}="
                           f"{scaling.vllm}) but the process group has {world or 'no'} processes: start the job "
                           "through workers.engine.distributed.train_job, which launches them")


def _check_zero3(scaling: Scaling, config: TrainConfig) -> None:
    if scaling.zero_stage == 3 and config.method == "sdft" and config.teacher_model_kind == "ema":
        # TRL's EMA teacher adapter copies the student's LoRA weights directly; under ZeRO-3 each rank holds
        # only a shard of them, so the teacher would be built from fragments.
        raise ScalingError(f"{SETTING['strategy']}=deepspeed-zero3 shards the LoRA weights the EMA teacher adapter "
                           "copies (teacher_model_kind='ema'); use deepspeed-zero2 or ddp for this job, or "
                           "teacher_model_kind='base' (the starting model as the teacher)")


def _vllm_arguments(scaling: Scaling) -> dict:
    """SDFTConfig's generation settings: TRL's vLLM engine inside each training process (colocate), sharing
    its GPU; the weights are synced into it before each step's rollouts."""
    if scaling.vllm == "off":
        return {}
    return {"use_vllm": True, "vllm_mode": scaling.vllm,
            "vllm_gpu_memory_utilization": scaling.vllm_gpu_memory_utilization,
            "vllm_enable_sleep_mode": scaling.vllm_sleep}


def _training_arguments(config: TrainConfig, work_dir: Path, device: str, dtype, total_steps: int,
                        scaling: Scaling | None = None) -> dict:
    """The transformers TrainingArguments both trainers share, so SDFT and SFT differ only in the loss.

    Data-parallel, each rank takes batch_size / processes rows of every micro-batch: the same global batch,
    the same optimizer steps, the same learning-rate schedule as one process. (Dividing the gradient
    accumulation instead would only work when it is a multiple of the processes; its default is 1.)"""
    scaling = scaling or Scaling()
    per_rank, _ = scaling.per_process(config.batch_size, 0)
    distributed = {}
    if scaling.launches:
        distributed["ddp_backend"] = "nccl" if device == "cuda" else "gloo"
    if scaling.deepspeed:
        distributed["deepspeed"] = scaling.deepspeed_config()
    return dict(
        **distributed,
        output_dir=str(work_dir),
        per_device_train_batch_size=per_rank,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.resolved_learning_rate,
        # Steps are counted once here (TRL's sampler drops partial batches, SFT's does not) so both
        # methods take exactly the same number of optimizer steps on the same rows.
        max_steps=total_steps,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.resolved_warmup_steps(total_steps),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        gradient_checkpointing=config.gradient_checkpointing,
        logging_steps=config.log_every,
        save_strategy="steps" if config.checkpoint_every else "no",
        save_steps=config.checkpoint_every or 500,
        save_total_limit=2,  # the newest may be half-written when a worker dies; keep one before it
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


class _ProgressReporter(TrainerCallback):
    """Turns the trainer's logs into Progress for the observer; checks for cancellation every step."""

    def __init__(self, observer, total_steps: int, device: str, tokens_seen):
        self.observer = observer
        self.total_steps = total_steps
        self.meter = PeakMemoryMeter(device)
        self.tokens_seen = tokens_seen
        self.cancelled = False
        self.first_step: int | None = None
        self.losses: list[float] = []
        self.kls: list[float] = []
        self._start = time.monotonic()
        self._last_time = self._start
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = self._last_time = time.monotonic()
        self._last_tokens = self.tokens_seen()
        self.first_step = state.global_step + 1

    def on_step_end(self, args, state, control, **kwargs):
        if _call(self.observer, "should_cancel", False):
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return  # the end-of-training summary, not a step
        now, tokens = time.monotonic(), self.tokens_seen()
        kl = logs.get("self_distillation/distillation_loss")
        self.losses.append(float(logs["loss"]))
        if kl is not None:
            self.kls.append(float(kl))
        steps_done = state.global_step - (self.first_step or 1) + 1
        per_step = (now - self._start) / max(steps_done, 1)
        progress = Progress(
            step=state.global_step,
            total_steps=self.total_steps,
            loss=float(logs["loss"]),
            kl=float(kl) if kl is not None else None,
            learning_rate=logs.get("learning_rate"),
            tokens_per_second=(tokens - self._last_tokens) / max(now - self._last_time, 1e-9),
            eta_seconds=per_step * (self.total_steps - state.global_step),
            peak_memory_bytes=self.meter.peak_bytes(),
            epoch=state.epoch,
        )
        self._last_time, self._last_tokens = now, tokens
        _call(self.observer, "on_progress", None, progress)

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        _call(self.observer, "on_checkpoint", None, state.global_step, str(path))

    def summary(self, steps: int, peak_bytes: int) -> dict:
        wall = time.monotonic() - self._start
        return {
            "steps": steps,
            "final_loss": self.losses[-1] if self.losses else None,
            "mean_loss": sum(self.losses) / len(self.losses) if self.losses else None,
            "mean_kl": sum(self.kls) / len(self.kls) if self.kls else None,
            "wall_seconds": round(wall, 3),
            "tokens_per_second": self.tokens_seen() / wall if wall > 0 else None,
            "peak_memory_bytes": peak_bytes,
        }


def _call(observer, name: str, default, *args):
    method = getattr(observer, name, None)
    return method(*args) if method is not None else default


def _gathered_student(trainer, model, base_dir, dtype, config: TrainConfig):
    """Under ZeRO-3 each rank holds a shard of every weight. Every rank gathers the student's LoRA weights
    (small); rank 0 puts them on a fresh CPU copy of the base model, which write_candidate merges and saves."""
    import deepspeed
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from workers.engine.trainers import _lora

    lora = [param for name, param in model.named_parameters() if f".{STUDENT_ADAPTER}." in name]
    with deepspeed.zero.GatheredParameters(lora, modifier_rank=None):
        state = {key: value.detach().cpu().clone()
                 for key, value in get_peft_model_state_dict(model, adapter_name=STUDENT_ADAPTER).items()}
    if not trainer.is_world_process_zero():
        return None
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # else this load would be sharded too, by one rank alone: a hang
    fresh = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype), _lora(config))
    set_peft_model_state_dict(fresh, state, adapter_name=STUDENT_ADAPTER)
    return fresh


def write_candidate(model, tokenizer, output_dir: Path, config: dict, metrics: dict, base_dir) -> dict:
    """adapter/ + merged weights + tokenizer + accrete.json, in one atomic rename. `model` is the trained
    PeftModel (unwrapped from DDP/DeepSpeed)."""
    with atomic_directory(output_dir) as temp:
        model.save_pretrained(temp / "adapter", selected_adapters=[STUDENT_ADAPTER])
        if TEACHER_ADAPTER in model.peft_config:
            model.delete_adapter(TEACHER_ADAPTER)  # the EMA teacher is training state, not part of the result
        model.set_adapter(STUDENT_ADAPTER)
        merged = model.merge_and_unload()
        merged.save_pretrained(temp, safe_serialization=True)
        tokenizer.save_pretrained(temp)
        for leftover in ("README.md",):
            (temp / leftover).unlink(missing_ok=True)
        checksums = sha256_tree(temp)
        manifest = {
            "format": 1,
            "base_dir": str(base_dir),
            "config": config,
            "metrics": metrics,
            "checksums": checksums,
        }
        (temp / "accrete.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return sha256_tree(output_dir)
