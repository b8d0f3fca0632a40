"""The TRL trainers behind `train()`: SDFT with Accrete's teacher prompts and EMA teacher adapter, and the
SFT baseline. The recipe itself (data → model → loop → atomic result) lives in training.py."""

from __future__ import annotations

import os
import random
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch.utils.data import Sampler  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402
from trl.experimental.sdft import SDFTConfig, SDFTTrainer  # noqa: E402
from trl.experimental.sdft.sdft_trainer import DemonstrationTeacherContextBuilder  # noqa: E402
from trl.experimental.sdft.teacher_sync import PEFTAdapterEMACallback  # noqa: E402
from trl.trainer.utils import use_adapter  # noqa: E402

from workers.engine.contract.config import TrainConfig  # noqa: E402
from workers.engine.contract.prompts import INLINE_TEMPLATE, teacher_messages  # noqa: E402

TEACHER_ADAPTER = "teacher"
STUDENT_ADAPTER = "default"


def _lora(config: TrainConfig) -> LoraConfig:
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )


class _StyledTeacherContext(DemonstrationTeacherContextBuilder):
    """TRL builds the teacher prompt from one template inside the last user turn; the "turn" style
    needs extra messages, so both styles are built by prompts.teacher_messages (one source of truth,
    shared with the readiness check and the UI preview). A row's privileged context is its
    demonstration, or {"demonstration", "style"} when it brings its own style (a rehearsed skill); an
    anchor's demonstration is empty, and its teacher prompt is the student's prompt."""

    def __init__(self, trainer, style: str):
        super().__init__(trainer)
        self.style = style

    def _compose_teacher_prompt(self, prompt, privileged_context):
        if isinstance(privileged_context, dict):
            return teacher_messages(prompt, privileged_context["demonstration"],
                                    privileged_context.get("style") or self.style)
        return teacher_messages(prompt, self._stringify_privileged_context(privileged_context), self.style)


class MixedBatchSampler(Sampler):
    """Indices for batches of `skill_per_batch` skill rows followed by `anchors_per_batch` anchor rows.

    The dataset holds the skill rows first (indices 0..n_skill-1), then the anchor pool. Each pool is
    walked in a fresh seeded shuffle per pass, so every skill row is seen once per epoch and the anchors
    cycle through the whole pool rather than repeating a few. TRL's SDFT loader asks for a generation
    batch (gradient_accumulation micro-batches) `repeat` times in a row (it generates once and slices),
    so each block is yielded `repeat` times. Deterministic for a seed, so a resumed job replays the same
    order and the trainer skips what it had done.

    Data-parallel over `ranks` processes, the global batch stays the same: each micro-batch's draws are
    split into `ranks` equal shares (skill rows and anchors alike). accelerate hands consecutive loader
    batches to the ranks in turn, so the shares are laid out for the loader that reads them: SDFT's loader
    takes a whole step (every micro-batch) at once, so rank-major; SFT's takes one micro-batch, so
    micro-major. With one rank both layouts are the single-process order.
    """

    def __init__(self, *, n_skill: int, n_anchor: int, skill_per_batch: int, anchors_per_batch: int,
                 micro_batches_per_step: int, steps: int, repeat: int, seed: int, ranks: int = 1,
                 rank_major: bool = True):
        if n_skill < skill_per_batch or (anchors_per_batch and n_anchor == 0):
            raise ValueError(f"{n_skill} skill rows and {n_anchor} anchors cannot fill batches of "
                             f"{skill_per_batch} + {anchors_per_batch}")
        if skill_per_batch % ranks or anchors_per_batch % ranks:
            raise ValueError(f"batches of {skill_per_batch} + {anchors_per_batch} do not split evenly over {ranks} "
                             "processes")
        self.n_skill, self.n_anchor = n_skill, n_anchor
        self.skill_per_batch, self.anchors_per_batch = skill_per_batch, anchors_per_batch
        self.micro, self.steps, self.repeat, self.seed = micro_batches_per_step, steps, repeat, seed
        self.ranks, self.rank_major = ranks, rank_major

    @classmethod
    def for_config(cls, config: TrainConfig, *, n_skill: int, n_anchor: int, steps: int, repeat: int,
                   ranks: int = 1, rank_major: bool = True):
        return cls(n_skill=n_skill, n_anchor=n_anchor, skill_per_batch=config.batch_size,
                   anchors_per_batch=config.anchors_per_step, micro_batches_per_step=config.gradient_accumulation_steps,
                   steps=steps, repeat=repeat, seed=config.seed, ranks=ranks, rank_major=rank_major)

    def __len__(self) -> int:
        return self.steps * self.micro * self.repeat * (self.skill_per_batch + self.anchors_per_batch)

    @staticmethod
    def _stream(rng: random.Random, size: int, offset: int):
        while True:
            order = list(range(offset, offset + size))
            rng.shuffle(order)
            yield from order

    def __iter__(self):
        rng = random.Random(self.seed)
        skills = self._stream(random.Random(rng.random()), self.n_skill, 0)
        anchors = self._stream(random.Random(rng.random()), self.n_anchor, self.n_skill)
        skill_share, anchor_share = self.skill_per_batch // self.ranks, self.anchors_per_batch // self.ranks
        for _ in range(self.steps):
            draws = [([next(skills) for _ in range(self.skill_per_batch)],
                      [next(anchors) for _ in range(self.anchors_per_batch)]) for _ in range(self.micro)]
            order = ([(rank, micro) for rank in range(self.ranks) for micro in range(self.micro)] if self.rank_major
                     else [(rank, micro) for micro in range(self.micro) for rank in range(self.ranks)])
            block = []
            for rank, micro in order:
                skill, anchor = draws[micro]
                block += skill[rank * skill_share:(rank + 1) * skill_share]
                block += anchor[rank * anchor_share:(rank + 1) * anchor_share]
            for _ in range(self.repeat):
                yield from block


class _EMATeacherAdapter(PEFTAdapterEMACallback):
    """TRL's EMA teacher adapter, with two changes.

    1. It starts as a copy of the student (the paper: phi_0 = theta_0). TRL starts it at zero, which
       for LoRA makes the EMA of A ramp up from 0 and leaves the teacher ~ the base model for ~100 steps.
    2. Its weights are saved in every checkpoint and restored on resume; transformers only reloads the
       active (student) adapter, and TRL's callback keeps its state in memory only.
    """

    FILE_NAME = "teacher_ema.safetensors"

    def __init__(self, *, resume_from: Path | None, **kwargs):
        super().__init__(**kwargs)
        self.resume_from = resume_from
        self.restored = False

    def _initialize_teacher_adapter(self):
        if self._initialized:
            return
        model = self.accelerator.unwrap_model(self.model) if self.accelerator is not None else self.model
        student_name = model.active_adapter or STUDENT_ADAPTER
        self.teacher_adapter_config = model.peft_config[student_name]
        student = get_peft_model_state_dict(model, adapter_name=student_name)
        # On resume transformers may already have re-created the teacher adapter from the checkpoint.
        if self.teacher_adapter_name not in model.peft_config:
            model.add_adapter(self.teacher_adapter_name, self.teacher_adapter_config)
        saved = self.resume_from / self.FILE_NAME if self.resume_from else None
        if saved is not None and saved.is_file():
            state = load_file(str(saved))
            self.shadow_weights = {key: state[key].to(value.device, value.dtype) for key, value in student.items()}
            self.restored = True
        else:
            self.shadow_weights = {key: value.detach().clone() for key, value in student.items()}
        model.set_adapter(self.teacher_adapter_name)
        set_peft_model_state_dict(model, self.shadow_weights, adapter_name=self.teacher_adapter_name)
        model.set_adapter(student_name)  # also leaves only the student's weights trainable
        self._initialized = True

    def on_save(self, args, state, control, **kwargs):
        if self.shadow_weights is None or not state.is_world_process_zero:
            return  # data-parallel ranks hold the same teacher: one writer
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            tensors = {key: value.detach().contiguous().cpu() for key, value in self.shadow_weights.items()}
            save_file(tensors, str(checkpoint / self.FILE_NAME))


class _RankSamplingSeed(TrainerCallback):
    """Data-parallel ranks sample their rollouts from their own random stream (seed + rank): with one shared
    seed every rank would draw the same noise for its different prompts. Set at the start of training; on a
    resume the trainer then restores each rank's saved random state. One process: untouched."""

    def on_train_begin(self, args, state, control, **kwargs):
        if args.world_size > 1:
            torch.manual_seed(args.seed + args.process_index)


class AccreteSDFTTrainer(SDFTTrainer):
    """TRL's SDFTTrainer with the teacher prompt styles, the EMA fix above, and a token counter."""

    @classmethod
    def build(cls, *, model, tokenizer, rows, config, common_args, max_prompt_length, max_completion_length,
              resume_from, anchors=(), anchor_completion_length=None, ranks=1):
        anchored = bool(anchors) and config.anchors_per_step > 0
        anchor_limit = anchor_completion_length or max_completion_length
        if anchored:
            # A batch is batch_size skill rows + anchors_per_step anchors (MixedBatchSampler), split over the ranks.
            common_args = {**common_args,
                           "per_device_train_batch_size": (config.batch_size + config.anchors_per_step) // ranks}
        args = SDFTConfig(
            **common_args,
            max_prompt_length=max_prompt_length,
            # generate() runs to the longest row budget of the batch; sample_rollouts cuts each row to its own
            max_completion_length=max(max_completion_length, anchor_limit) if anchored else max_completion_length,
            num_generations=config.num_generations,
            temperature=config.temperature,
            distillation_mode=config.distillation_mode,
            distillation_alpha=config.distillation_alpha,
            distillation_topk=100 if config.distillation_mode == "topk_logits" else None,
            teacher_model_kind=config.teacher_model_kind,
            teacher_update_rate=config.teacher_update_rate,
            num_loss_tokens_to_skip=config.num_loss_tokens_to_skip,
            # Same wording as prompts.INLINE_TEMPLATE; informational only, _StyledTeacherContext builds prompts.
            teacher_prompt_template=INLINE_TEMPLATE.replace("{question}", "{prompt}").replace(
                "{demonstration}", "{privileged_context}"
            ),
            # One rollout per prompt per optimizer step, used once: on-policy, so there is no stale
            # policy to importance-correct.
            num_iterations=1,
            distillation_is_clip=None,
            shuffle_dataset=True,
        )
        anchors = list(anchors) if anchored else []
        dataset = Dataset.from_list([
            {"prompt": row.prompt,
             "privileged_context": {"demonstration": row.demonstration, "style": row.teacher_style or config.teacher_style},
             "is_anchor": row.is_anchor,
             # an anchor answers a general prompt at length; a skill row (or a rehearsed demonstration)
             # keeps the skill's completion budget, so anchoring does not change what a skill row learns
             "max_new_tokens": anchor_limit if row.is_anchor else max_completion_length}
            for row in [*rows, *anchors]
        ])
        trainer = cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=_lora(config))
        trainer.teacher_context_builder = _StyledTeacherContext(trainer, config.teacher_style)
        trainer.anchor_teacher = config.anchor_teacher
        if anchored:
            trainer.mixed_sampler = MixedBatchSampler.for_config(
                config, n_skill=len(rows), n_anchor=len(anchors), steps=common_args["max_steps"],
                repeat=args.steps_per_generation * args.num_iterations, ranks=ranks, rank_major=True)
        trainer.add_callback(_RankSamplingSeed())
        if trainer._use_peft_ema_teacher_adapter():
            trainer.remove_callback(PEFTAdapterEMACallback)
            trainer.add_callback(_EMATeacherAdapter(
                resume_from=resume_from,
                model=trainer.model,
                teacher_adapter_name=TEACHER_ADAPTER,
                update_rate=args.teacher_update_rate,
                sync_steps=args.teacher_sync_steps,
                accelerator=trainer.accelerator,
            ))
        return trainer

    tokens_seen = 0
    mixed_sampler: MixedBatchSampler | None = None
    anchor_teacher = "ema"
    _row_limits: list[int] | None = None

    def _get_train_sampler(self, dataset=None):
        return self.mixed_sampler if self.mixed_sampler is not None else super()._get_train_sampler(dataset)

    def sample_rollouts(self, inputs):
        self._row_limits = [example.get("max_new_tokens") for example in inputs]
        try:
            return super().sample_rollouts(inputs)
        finally:
            self._row_limits = None

    def _prepare_training_batch(self, inputs):
        batch = super()._prepare_training_batch(inputs)
        batch["is_anchor"] = torch.tensor([bool(example.get("is_anchor")) for example in inputs],
                                          device=batch["completion_ids"].device)
        return batch

    def _compute_teacher_student_logits(self, model, teacher_model, inputs):
        logits = super()._compute_teacher_student_logits(model, teacher_model, inputs)
        anchor = inputs.get("is_anchor")
        if self.anchor_teacher != "base" or anchor is None or not bool(anchor.any()):
            return logits
        # anchor_teacher="base": an anchor's teacher is the starting model (the adapter disabled), the
        # strict Learning-without-Forgetting target; skill rows keep the EMA teacher with the demonstration.
        with torch.no_grad(), use_adapter(self.accelerator.unwrap_model(teacher_model), adapter_name=None):
            base = self._forward_logits(teacher_model, inputs["teacher_input_ids"][anchor],
                                        inputs["teacher_attention_mask"][anchor], inputs["completion_ids"].size(1))
        logits.teacher_logits[anchor] = base
        return logits

    def _generate(self, prompt_ids):
        prompt_ids, completions = super()._generate(prompt_ids)  # transformers' generate, or vLLM's
        if self._row_limits is not None and len(self._row_limits) == len(completions):
            # One generate() call for the whole batch runs to the longest budget (the anchors'); each
            # row is cut to its own, as if it had been generated alone with that max_new_tokens.
            completions = [ids[:limit] if limit else ids for ids, limit in zip(completions, self._row_limits, strict=True)]
        return prompt_ids, completions

    def _generate_transformers(self, prompt_ids):
        # Rollouts are ~70% of a step on CPU. Merging the student's LoRA into the base weights for the
        # duration of generate() skips the adapter's extra matmuls per layer and token (~25% faster
        # generation measured on SmolLM2). Same function, so the same algorithm; only in fp32, where
        # merge-then-unmerge returns the base weights to within float rounding (in bf16 it would drift).
        model = self.accelerator.unwrap_model(self.model)
        if not (hasattr(model, "merge_adapter") and model.dtype == torch.float32):
            return super()._generate_transformers(prompt_ids)
        model.merge_adapter()
        try:
            return super()._generate_transformers(prompt_ids)
        finally:
            model.unmerge_adapter()

    def _prepare_inputs(self, generation_batch):
        batch = super()._prepare_inputs(generation_batch)
        if self.model.training:
            self.tokens_seen += int(batch["prompt_mask"].sum() + batch["completion_mask"].sum())
        return batch


class AccreteSFTTrainer(SFTTrainer):
    """The SFT baseline: the same LoRA on the same rows, the demonstration as the completion. With
    anchors (replay), each batch also holds anchors_per_step anchor prompts whose completion is the
    starting model's own greedy answer, mixed exactly as in anchored SDFT."""

    @classmethod
    def build(cls, *, model, tokenizer, rows, config, common_args, anchors=(), ranks=1):
        anchored = bool(anchors) and config.anchors_per_step > 0
        if anchored:
            common_args = {**common_args,
                           "per_device_train_batch_size": (config.batch_size + config.anchors_per_step) // ranks}
        args = SFTConfig(
            **common_args,
            max_length=None,  # resolve_lengths already checked every row fits the context: never truncate
            completion_only_loss=True,
            packing=False,
        )
        every = [*rows, *(anchors if anchored else [])]
        dataset = Dataset.from_list([
            {"prompt": row.prompt, "completion": [{"role": "assistant", "content": row.demonstration}]}
            for row in every
        ])
        trainer = cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=_lora(config))
        if anchored:
            # SFT's loader reads one micro-batch per rank at a time: micro-major shares.
            trainer.mixed_sampler = MixedBatchSampler.for_config(config, n_skill=len(rows), n_anchor=len(anchors),
                                                   steps=common_args["max_steps"], repeat=1, ranks=ranks,
                                                   rank_major=False)
        return trainer

    tokens_seen = 0
    mixed_sampler: MixedBatchSampler | None = None

    def _get_train_sampler(self, *args, **kwargs):
        return self.mixed_sampler if self.mixed_sampler is not None else super()._get_train_sampler(*args, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        mask = inputs.get("attention_mask")
        self.tokens_seen += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
        return super().training_step(model, inputs, num_items_in_batch)
