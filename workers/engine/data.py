"""The plain values the platform hands the engine: training rows and eval items."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("system", "user", "assistant")


def as_messages(prompt: str | list[dict]) -> list[dict]:
    """A bare string becomes one user turn; a message list is checked and copied."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise ValueError("a prompt is a string or a non-empty list of chat messages")
    messages = []
    for index, message in enumerate(prompt):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ValueError(f"message {index}: needs a role in {ROLES}, got {message!r}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"message {index}: content must be a string")
        messages.append({"role": message["role"], "content": message["content"]})
    if messages[-1]["role"] != "user":
        raise ValueError(f"a prompt must end with a user turn, got {messages[-1]['role']!r}")
    return messages


@dataclass(frozen=True)
class TrainRow:
    """A skill row (prompt + demonstration), or a retention anchor (`TrainRow.anchor`: no demonstration,
    so its teacher sees the plain prompt). A rehearsed row of an earlier skill keeps that skill's
    teacher style; None means the job's."""

    prompt: list[dict]
    demonstration: str
    # What the skill's scorer compares against in the readiness check; the demonstration when None.
    reference: str | None = field(default=None, compare=False)
    teacher_style: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", as_messages(self.prompt))
        if not isinstance(self.demonstration, str) or (self.demonstration and not self.demonstration.strip()):
            raise ValueError("a training row needs a non-empty demonstration (an anchor has none: TrainRow.anchor)")

    @classmethod
    def anchor(cls, prompt: str | list[dict]) -> TrainRow:
        return cls(prompt=prompt, demonstration="")

    @property
    def is_anchor(self) -> bool:
        return self.demonstration == ""


@dataclass(frozen=True)
class EvalItem:
    case_id: str
    prompt: list[dict]
    reference: str
    # A case may carry its own scorer (the retention probes do); otherwise the suite's applies.
    scorer: str | None = None
    scorer_options: dict | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", as_messages(self.prompt))


class DataTooLongError(ValueError):
    """A row does not fit the model or the configured limits; the message names the row and the fix."""


@dataclass(frozen=True)
class RowLengths:
    """Token counts of the longest rows, measured with the model's chat template."""

    longest_teacher_prompt: int
    longest_teacher_row: int
    longest_demonstration: int
    longest_sft_sequence: int  # prompt + demonstration as an assistant turn
    longest_sft_row: int


def measure_lengths(tokenizer, rows: list[TrainRow], style: str) -> RowLengths:
    """Tokenize every row once; the teacher prompt is what TRL would truncate, so it sets the limit."""
    from workers.engine.contract.prompts import teacher_messages

    def chat_length(messages: list[dict], add_generation_prompt: bool) -> int:
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True
        )
        return len(encoded["input_ids"])

    teacher = [chat_length(teacher_messages(row.prompt, row.demonstration, row.teacher_style or style), True)
               for row in rows]
    demonstration = [len(tokenizer(row.demonstration, add_special_tokens=False)["input_ids"]) for row in rows]
    sft = [
        chat_length(row.prompt + [{"role": "assistant", "content": row.demonstration}], False) for row in rows
    ]
    teacher_row = max(range(len(rows)), key=teacher.__getitem__)
    sft_row = max(range(len(rows)), key=sft.__getitem__)
    return RowLengths(
        longest_teacher_prompt=teacher[teacher_row],
        longest_teacher_row=teacher_row,
        longest_demonstration=max(demonstration),
        longest_sft_sequence=sft[sft_row],
        longest_sft_row=sft_row,
    )
