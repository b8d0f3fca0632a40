"""How one training job uses a worker's hardware: processes, the data-parallel strategy, vLLM generation.

A worker's setting, not a job's: the same job trains the same adapter on one CPU or on eight GPUs, with the
same global batch (each of N processes takes batch_size / N skill rows and anchors_per_step / N anchors of
every step, so an optimizer step sees exactly the rows one process would). Web-safe (no torch): the Django
settings validate the ACCRETE_TRAIN_* variables through this class, and the engine reads it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass

STRATEGIES = ("ddp", "deepspeed-zero2", "deepspeed-zero3")
VLLM_MODES = ("off", "colocate")
# The setting each field comes from, so an error names what an operator can change.
SETTING = {
    "processes": "ACCRETE_TRAIN_PROCESSES",
    "strategy": "ACCRETE_TRAIN_DISTRIBUTED",
    "vllm": "ACCRETE_TRAIN_VLLM",
    "vllm_gpu_memory_utilization": "ACCRETE_TRAIN_VLLM_GPU_MEMORY",
    "vllm_sleep": "ACCRETE_TRAIN_VLLM_SLEEP",
}
MAX_PROCESSES = 64


class ScalingError(ValueError):
    """A scaling setting is invalid or cannot run here; the message names the setting and the fix."""


@dataclass(frozen=True)
class Scaling:
    processes: int = 1
    strategy: str = "ddp"
    vllm: str = "off"
    # vLLM's share of each GPU in colocate mode (its weights + KV cache); training gets the rest.
    vllm_gpu_memory_utilization: float = 0.3
    # vLLM's weights and cache leave the GPU between generations (slower to wake, more room to train).
    vllm_sleep: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.processes, bool) or not isinstance(self.processes, int) or not (
                1 <= self.processes <= MAX_PROCESSES):
            raise ScalingError(f"{SETTING['processes']}={self.processes!r} is invalid: a whole number of training "
                               f"processes (one per GPU) from 1 to {MAX_PROCESSES}; 1 trains in the worker's process")
        if self.strategy not in STRATEGIES:
            raise ScalingError(f"{SETTING['strategy']}={self.strategy!r} is invalid: one of {', '.join(STRATEGIES)}")
        if self.vllm not in VLLM_MODES:
            raise ScalingError(f"{SETTING['vllm']}={self.vllm!r} is invalid: one of {', '.join(VLLM_MODES)}")
        if isinstance(self.vllm_gpu_memory_utilization, bool) or not isinstance(
                self.vllm_gpu_memory_utilization, int | float) or not 0 < self.vllm_gpu_memory_utilization < 1:
            raise ScalingError(f"{SETTING['vllm_gpu_memory_utilization']}={self.vllm_gpu_memory_utilization!r} is "
                               "invalid: the share of each GPU vLLM may take, between 0 and 1 (e.g. 0.3)")

    @property
    def launches(self) -> bool:
        """Whether the job runs in a child process group (torchrun) rather than in the worker's process.
        Everything that takes a process over (torch.distributed, DeepSpeed, a vLLM engine and its GPU
        memory) runs there, so the worker process stays clean for the next job."""
        return self.processes > 1 or self.strategy != "ddp" or self.vllm != "off"

    @property
    def deepspeed(self) -> bool:
        return self.strategy.startswith("deepspeed-")

    @property
    def zero_stage(self) -> int | None:
        return int(self.strategy[-1]) if self.deepspeed else None

    def per_process(self, batch_size: int, anchors_per_step: int) -> tuple[int, int]:
        """(skill rows, anchor rows) each process takes per micro-batch, for the same global batch as one
        process. Refuses a batch that does not split evenly: a rounded split would change the recipe."""
        for name, value in (("batch_size", batch_size), ("anchors per step", anchors_per_step)):
            if value % self.processes:
                raise ScalingError(
                    f"{SETTING['processes']}={self.processes} splits every batch across {self.processes} processes, "
                    f"but the job's {name} is {value}, which does not divide evenly: set batch_size (and "
                    f"anchor_ratio x batch_size) to a multiple of {self.processes}, or lower {SETTING['processes']}")
        return batch_size // self.processes, anchors_per_step // self.processes

    def check_installed(self) -> None:
        """Refuse a strategy whose library this worker lacks, before any process starts."""
        if self.deepspeed and importlib.util.find_spec("deepspeed") is None:
            raise ScalingError(f"{SETTING['strategy']}={self.strategy} needs DeepSpeed, which is not installed in "
                               "this worker's environment: `pip install deepspeed` on the GPU image (same torch), "
                               f"or set {SETTING['strategy']}=ddp")
        if self.vllm != "off" and importlib.util.find_spec("vllm") is None:
            raise ScalingError(f"{SETTING['vllm']}={self.vllm} needs vLLM, which is not installed in this worker's "
                               f"environment: `pip install vllm` on a CUDA worker, or set {SETTING['vllm']}=off")

    def deepspeed_config(self) -> dict | None:
        """The ZeRO config handed to TrainingArguments(deepspeed=...); "auto" lets the Trainer fill in the batch,
        accumulation, clipping and precision from the job's own settings, so they cannot disagree."""
        if not self.deepspeed:
            return None
        zero: dict = {"stage": self.zero_stage, "overlap_comm": True, "contiguous_gradients": True,
                      "reduce_bucket_size": "auto"}
        if self.zero_stage == 3:
            # The weights are sharded across GPUs: gather a layer at a time, and whole for a save.
            zero.update(stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto",
                        stage3_gather_16bit_weights_on_model_save=True)
        return {
            "zero_optimization": zero,
            "bf16": {"enabled": "auto"},
            "fp16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto",
            "train_batch_size": "auto",
            "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto",
        }

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Scaling:
        return cls(**data)
