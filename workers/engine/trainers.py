"""The TRL trainers behind `train()`: SDFT with Accrete's teacher prompts and EMA teacher adapter, and the
SFT baseline. The recipe itself (data → model → loop → atomic result) lives in training.py."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402
from trl.experimental.sdft import SDFTConfig, SDFTTrainer  # noqa: E402
from trl.experimental.sdft.sdft_trainer import DemonstrationTeacherContextBuilder  # noqa: E402
from trl.experimental.sdft.teacher_sync import PEFTAdapterEMACallback  # noqa: E402

from workers.engine.config import TrainConfig  # noqa: E402
from workers.engine.prompts import INLINE_TEMPLATE, teacher_messages  # noqa: E402

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
    shared with the readiness check and the UI preview)."""

    def __init__(self, trainer, style: str):
        super().__init__(trainer)
        self.style = style

    def _compose_teacher_prompt(self, prompt, privileged_context):
        return teacher_messages(prompt, self._stringify_privileged_context(privileged_context), self.style)


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
        if self.shadow_weights is None:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            tensors = {key: value.detach().contiguous().cpu() for key, value in self.shadow_weights.items()}
            save_file(tensors, str(checkpoint / self.FILE_NAME))


class AccreteSDFTTrainer(SDFTTrainer):
    """TRL's SDFTTrainer with the teacher prompt styles, the EMA fix above, and a token counter."""

    @classmethod
    def build(cls, *, model, tokenizer, rows, config, common_args, max_prompt_length, max_completion_length,
              resume_from):
        args = SDFTConfig(
            **common_args,
            max_prompt_length=max_prompt_length,
            max_completion_length=max_completion_length,
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
        dataset = Dataset.from_list([{"prompt": row.prompt, "privileged_context": row.demonstration} for row in rows])
        trainer = cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=_lora(config))
        trainer.teacher_context_builder = _StyledTeacherContext(trainer, config.teacher_style)
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
    """The SFT baseline: the same LoRA on the same rows, the demonstration as the completion."""

    @classmethod
    def build(cls, *, model, tokenizer, rows, config, common_args):
        args = SFTConfig(
            **common_args,
            max_length=None,  # resolve_lengths already checked every row fits the context: never truncate
            completion_only_loss=True,
            packing=False,
        )
        dataset = Dataset.from_list([
            {"prompt": row.prompt, "completion": [{"role": "assistant", "content": row.demonstration}]}
            for row in rows
        ])
        return cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=_lora(config))

    tokens_seen = 0

    def training_step(self, model, inputs, num_items_in_batch=None):
        mask = inputs.get("attention_mask")
        self.tokens_seen += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
        return super().training_step(model, inputs, num_items_in_batch)
