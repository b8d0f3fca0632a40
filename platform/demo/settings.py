"""The settings `make demo` uses, in one place (pure Python: bench/retention.py measures the same runs
without Django).

SDFT as the paper runs it (forward KL over the full vocabulary, EMA teacher 0.01, one rollout at T=1)
at a LoRA learning rate, with two measured changes:
- no skipped completion tokens. The paper skips the first 3 tokens of long answers to keep out phrases
  like "Based on the example"; the demo skills answer in ~10 tokens, and skipping 3 of them left the
  student without a signal on the value it must copy (acme-units, 40 steps at 2e-3: 0/10 with the skip,
  8/10 without; see README);
- retention anchoring: every step mixes as many general anchor prompts as skill rows (anchor_ratio 1),
  whose teacher is the EMA teacher on the plain prompt; a skill added on top of another rehearses the
  earlier skill's training prompts among the anchors. Plain SDFT on SmolLM2-135M kept 22-24 of the 32
  counted probes over three seeds; anchored, 28-30 (SDFT.md).
The SFT run is the "aggressive" fine-tune a team might try to get a skill in fast: the same steps at
twice the rate, no anchors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.engine.contract.config import TrainConfig


@dataclass(frozen=True)
class DemoSettings:
    # The training config of both anchored SDFT steps (skill 1, then skill 2 rehearsing skill 1): the
    # TrainConfig fields the demo sets; the rest keep their paper defaults.
    sdft: dict = field(default_factory=lambda: {
        "max_steps": 32, "batch_size": 4, "learning_rate": 1e-3, "num_loss_tokens_to_skip": 0,
        "anchor_ratio": 1.0, "anchor_teacher": "ema", "rehearsal": "anchor",
    })
    # The training config of the step that forgets: plain SFT, the same steps at twice the rate, no anchors.
    sft_aggressive: dict = field(default_factory=lambda: {"max_steps": 32, "batch_size": 4, "learning_rate": 2e-3})
    # How far the retention probes may drop per version in the demo lineage (stored on the base model).
    # SmolLM2-135M passes 32 of the probes, and its short answers shift under any update; each gate table
    # prints the tolerance it applied. Fixed before anchoring was measured, and not moved since.
    probe_tolerance: float = 0.2
    # The base model: `make model` fetches its GGUF, the demo imports it under this name.
    base_model_name: str = "SmolLM2-135M-Instruct"
    # The demo skills (skills.json: team, slug, scorer, tolerances; one <slug>.jsonl of demonstrations
    # each), relative to the project root.
    data_dir: str = "skills/demo_data"
    # Who plays which part: the requester (a contributor) asks for training, the approver (a skill owner)
    # approves, in every demo team, so the four-eyes rule holds; both, and `admin`, log in with `password`.
    requester: str = "rui"
    approver: str = "olivia"
    password: str = "demo-pass"
    # The queues the local worker consumes: the demo's one worker trains, evaluates and checks readiness.
    worker_queues: str = "train,eval,default,webhooks"
    # How long the local worker may take to finish its current task after SIGTERM before it is killed.
    worker_stop_seconds: int = 30
    # How often the demo reads a job's progress or a gate's state, and how long it waits for any one of
    # them before it gives up (a CPU job of the demo takes ~7 min; an hour means the worker is gone).
    poll_seconds: float = 1.0
    wait_timeout_seconds: int = 3600

    def __post_init__(self) -> None:
        # Fail at import, naming the field, rather than 20 minutes in when the job is requested.
        TrainConfig.from_dict({**self.sdft, "method": "sdft"})
        TrainConfig.from_dict({**self.sft_aggressive, "method": "sft"})
        if not 0.0 <= self.probe_tolerance <= 1.0:
            raise ValueError(f"DemoSettings.probe_tolerance={self.probe_tolerance!r} is invalid: must be in [0, 1]")
        if self.requester == self.approver:
            raise ValueError(f"DemoSettings.requester and approver are both {self.requester!r}: the four-eyes "
                             "rule needs two people")
        for name in ("worker_stop_seconds", "poll_seconds", "wait_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DemoSettings.{name}={getattr(self, name)!r} is invalid: must be > 0")


DEMO = DemoSettings()
