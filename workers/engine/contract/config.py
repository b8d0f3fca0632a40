"""TrainConfig: every knob of a training run, validated up front and saved beside the weights.

Defaults follow the SDFT paper (arXiv 2601.19897) where it speaks: forward KL over the full
vocabulary, an EMA teacher with rate 0.01, one on-policy rollout per prompt at temperature 1.0, the
first 3 completion tokens skipped, cosine schedule with warm-up. TRL's own SDFT defaults differ
(top-100 JSD, base teacher, 8 generations), so every field is passed to TRL explicitly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

METHODS = ("sdft", "sft")
TEACHER_STYLES = ("inline", "turn")
DISTILLATION_MODES = ("full_logits", "topk_logits", "sampled_token")
TEACHER_MODEL_KINDS = ("ema", "base", "live")
LR_SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
ANCHOR_TEACHERS = ("ema", "base")
REHEARSAL_MODES = ("anchor", "demonstration", "off")
# Retention anchoring (Learning without Forgetting, on-policy): anchor rows per skill row in each step.
# SDFT anchors by default (measured on SmolLM2-135M: 29 of 32 probes kept instead of 23, skill the same);
# 0 is paper-pure SDFT. The SFT baseline does not anchor unless asked (then it replays the starting
# model's own greedy answers to the anchor prompts: the classic replay baseline).
DEFAULT_ANCHOR_RATIO = {"sdft": 1.0, "sft": 0.0}
MAX_ANCHOR_RATIO = 8.0

# LoRA needs roughly 10x the learning rate of a full fine-tune; the paper swept 5e-6..5e-5 for full
# fine-tunes, so 1e-4 sits at the paper's middle. SFT gets the same rate so the baseline is a fair
# comparison (same adapter, same data, same steps, only the objective differs).
DEFAULT_LEARNING_RATE = {"sdft": 1e-4, "sft": 1e-4}
# The paper generates up to 2048 tokens; derived completion lengths never exceed it.
MAX_DERIVED_COMPLETION_LENGTH = 2048
# The paper warms up for 10 steps; short runs warm up for a tenth of their steps instead.
PAPER_WARMUP_STEPS = 10


class ConfigError(ValueError):
    """A TrainConfig field is out of range; the message names the field, the value and what is allowed, and
    `field` names the field alone (the API's problem details point at it)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"TrainConfig.{field}={value!r} is invalid: {allowed}", field=field)


@dataclass
class TrainConfig:
    method: str = "sdft"
    teacher_style: str = "inline"
    learning_rate: float | None = None  # None: DEFAULT_LEARNING_RATE[method]
    num_epochs: float = 1.0
    max_steps: int | None = None  # overrides num_epochs when set
    batch_size: int = 4  # prompts per forward pass; an optimizer step sees batch_size x accumulation
    gradient_accumulation_steps: int = 1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: str | list[str] = "all-linear"
    max_completion_length: int | None = None  # None: ceil(1.25 x longest demonstration), capped
    max_prompt_length: int | None = None  # None: longest teacher prompt, so nothing is truncated
    distillation_mode: str = "full_logits"
    distillation_alpha: float = 0.0  # 0 = forward KL(teacher || student), 1 = reverse KL, between = JSD
    teacher_model_kind: str = "ema"
    teacher_update_rate: float = 0.01
    num_generations: int = 1
    temperature: float = 1.0
    num_loss_tokens_to_skip: int = 3
    warmup_steps: int | None = None  # None: min(10, total_steps // 10)
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # Off by default: it recomputes activations (~30% slower) to save memory LoRA rarely needs at
    # these sizes. TRL turns it on by default, so it is always passed explicitly.
    gradient_checkpointing: bool = False
    seed: int = 0
    dtype: str = "auto"  # auto: float32 on CPU, bfloat16 on CUDA
    device: str = "auto"
    log_every: int = 1
    checkpoint_every: int = 0  # steps; 0 = no checkpoints (and no resume)
    # Retention anchoring: each step mixes round(anchor_ratio x batch_size) anchor rows into the
    # batch_size skill rows. An anchor has no demonstration: its teacher sees the student's own prompt,
    # so the loss pulls the student back toward the teacher (`ema`: the slowly moving EMA teacher;
    # `base`: the starting model, adapter disabled) on general prompts. None: DEFAULT_ANCHOR_RATIO[method].
    anchor_ratio: float | None = None
    anchor_teacher: str = "ema"
    # Rollout length of an anchor row. A general answer runs to the limit and generation is much of a CPU
    # step, so this sets the cost of anchoring: on the demo's SmolLM2 job (4 skill rows + 4 anchors) a step
    # took ~20 s with 32 tokens and ~13 s with 16 (plain SDFT ~4.5 s). The forgetting we saw shows in the
    # first tokens (the skill's format leaking into every answer).
    anchor_max_new_tokens: int = 16
    # Earlier skills of the lineage join the anchors: their *training* rows as plain anchors ("anchor",
    # teacher = the prompt alone), as SDFT rows with their demonstration ("demonstration"), or not ("off").
    rehearsal: str = "anchor"
    rehearsal_skills: list[str] | None = None  # skill slugs to rehearse; None = every earlier skill
    anchor_pool_sha256: str | None = None  # recorded by the platform: which anchor pool the job used

    def __post_init__(self) -> None:
        self._check_choice("method", METHODS)
        self._check_choice("teacher_style", TEACHER_STYLES)
        self._check_choice("distillation_mode", DISTILLATION_MODES)
        self._check_choice("teacher_model_kind", TEACHER_MODEL_KINDS)
        self._check_choice("lr_scheduler_type", LR_SCHEDULERS)
        self._check_choice("dtype", DTYPES)
        self._check_choice("device", DEVICES)
        if self.learning_rate is not None and not (0 < self.learning_rate <= 1e-2):
            _fail("learning_rate", self.learning_rate, "must be in (0, 0.01], or None for the method default")
        if not (isinstance(self.num_epochs, int | float) and 0 < self.num_epochs <= 100):
            _fail("num_epochs", self.num_epochs, "must be a number in (0, 100]")
        self._check_int("max_steps", 1, 1_000_000, optional=True)
        self._check_int("batch_size", 1, 4096)
        self._check_int("gradient_accumulation_steps", 1, 1024)
        self._check_int("lora_r", 1, 1024)
        self._check_int("lora_alpha", 1, 4096)
        if not (0.0 <= self.lora_dropout < 1.0):
            _fail("lora_dropout", self.lora_dropout, "must be in [0, 1)")
        targets = self.lora_target_modules
        if not (targets == "all-linear" or (isinstance(targets, list) and targets and all(
            isinstance(name, str) and name for name in targets
        ))):
            _fail("lora_target_modules", targets, "must be 'all-linear' or a non-empty list of module names")
        self._check_int("max_completion_length", 1, 32768, optional=True)
        self._check_int("max_prompt_length", 1, 1_000_000, optional=True)
        if not (0.0 <= self.distillation_alpha <= 1.0):
            _fail("distillation_alpha", self.distillation_alpha, "must be in [0, 1] (0 forward KL, 1 reverse KL)")
        if self.distillation_mode == "sampled_token" and self.distillation_alpha != 1.0:
            _fail("distillation_alpha", self.distillation_alpha, "must be 1.0 when distillation_mode='sampled_token'")
        if not (0.0 < self.teacher_update_rate <= 1.0):
            _fail("teacher_update_rate", self.teacher_update_rate, "must be in (0, 1]")
        self._check_int("num_generations", 1, 64)
        if not (0.0 < self.temperature <= 2.0):
            _fail("temperature", self.temperature, "must be in (0, 2]")
        self._check_int("num_loss_tokens_to_skip", 0, 64)
        self._check_int("warmup_steps", 0, 100_000, optional=True)
        if not (0.0 <= self.weight_decay <= 1.0):
            _fail("weight_decay", self.weight_decay, "must be in [0, 1]")
        if not (self.max_grad_norm > 0):
            _fail("max_grad_norm", self.max_grad_norm, "must be > 0")
        if not isinstance(self.gradient_checkpointing, bool):
            _fail("gradient_checkpointing", self.gradient_checkpointing, "must be true or false")
        self._check_int("seed", 0, 2**32 - 1)
        self._check_int("log_every", 1, 100_000)
        self._check_int("checkpoint_every", 0, 1_000_000)
        if self.anchor_ratio is not None and (
            isinstance(self.anchor_ratio, bool) or not isinstance(self.anchor_ratio, int | float)
            or not 0.0 <= self.anchor_ratio <= MAX_ANCHOR_RATIO
        ):
            _fail("anchor_ratio", self.anchor_ratio,
                  f"must be a number in [0, {MAX_ANCHOR_RATIO:g}] (anchor rows per skill row; 0 = no anchoring), "
                  "or None for the method default")
        self._check_choice("anchor_teacher", ANCHOR_TEACHERS)
        self._check_int("anchor_max_new_tokens", 1, 4096)
        self._check_choice("rehearsal", REHEARSAL_MODES)
        if self.rehearsal_skills is not None and not (
            isinstance(self.rehearsal_skills, list) and all(isinstance(s, str) and s for s in self.rehearsal_skills)
        ):
            _fail("rehearsal_skills", self.rehearsal_skills, "must be a list of skill slugs, or None for every earlier skill")
        if self.anchor_pool_sha256 is not None and not (
            isinstance(self.anchor_pool_sha256, str) and len(self.anchor_pool_sha256) == 64
        ):
            _fail("anchor_pool_sha256", self.anchor_pool_sha256, "must be a 64-character sha256 hex digest, or None")
        if (self.batch_size * self.gradient_accumulation_steps) % self.num_generations != 0:
            _fail("num_generations", self.num_generations,
                  "must divide batch_size x gradient_accumulation_steps (rollouts are grouped per prompt)")

    def _check_choice(self, field: str, allowed: tuple[str, ...]) -> None:
        value = getattr(self, field)
        if value not in allowed:
            _fail(field, value, f"must be one of {', '.join(repr(a) for a in allowed)}")

    def _check_int(self, field: str, low: int, high: int, optional: bool = False) -> None:
        value = getattr(self, field)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= high):
            suffix = ", or None" if optional else ""
            _fail(field, value, f"must be an integer in [{low}, {high}]{suffix}")

    @property
    def resolved_learning_rate(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATE[self.method]

    @property
    def resolved_anchor_ratio(self) -> float:
        return self.anchor_ratio if self.anchor_ratio is not None else DEFAULT_ANCHOR_RATIO[self.method]

    @property
    def anchors_per_step(self) -> int:
        """Anchor rows in each batch: at least one whenever anchoring is on."""
        ratio = self.resolved_anchor_ratio
        return 0 if ratio == 0 else max(1, round(ratio * self.batch_size))

    def resolved_warmup_steps(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(PAPER_WARMUP_STEPS, total_steps // 10)

    def total_steps(self, num_rows: int) -> int:
        """Optimizer steps of the run. Partial batches are dropped (TRL's SDFT sampler does), and both
        methods use this count, so an SDFT run and its SFT baseline take the same steps."""
        if self.max_steps is not None:
            return self.max_steps
        steps_per_epoch = max(num_rows // (self.batch_size * self.gradient_accumulation_steps), 1)
        return max(math.ceil(self.num_epochs * steps_per_epoch), 1)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("lora_target_modules", "rehearsal_skills"):
            if isinstance(data[name], list):
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"TrainConfig has no field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}",
                field=unknown[0],
            )
        for field in dataclasses.fields(cls):
            if field.name in data:
                _check_type(field, data[field.name])
        return cls(**data)


_SCALARS = {"int": (int, float), "float": (int, float), "str": (str,), "bool": (bool,)}


def _check_type(field: dataclasses.Field, value: Any) -> None:
    """A value of the wrong JSON type (a string where a number goes, null where a value is needed) is
    refused naming its field, before any range check compares it."""
    kinds = [part.strip() for part in str(field.type).split("|")]
    if value is None:
        if "None" not in kinds:
            _fail(field.name, value, "must not be null")
        return
    if any(kind not in _SCALARS and kind != "None" for kind in kinds):
        return  # a list or another structured type: its own check in __post_init__ says what it takes
    accepted = tuple(t for kind in kinds if kind != "None" for t in _SCALARS[kind])
    wrong_bool = isinstance(value, bool) and bool not in accepted
    if wrong_bool or not isinstance(value, accepted):
        expected = " or ".join(kind for kind in kinds if kind != "None")
        _fail(field.name, value, f"must be {'an' if expected[0] in 'aeiou' else 'a'} {expected}")
