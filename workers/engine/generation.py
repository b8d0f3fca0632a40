"""Batched greedy decoding and demonstration log-probabilities, for evaluation and readiness.

Greedy so that scores are reproducible: a gate compares two models on the same cases and any
sampling noise would show up as a regression. Batches are left-padded (decoder-only models continue
from the last position) and every sequence stops at EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from workers.engine.device import resolve_device, resolve_dtype

DEFAULT_MAX_NEW_TOKENS = 256


class Generator:
    """Loads a model folder once; or wraps a model already in memory (``Generator.from_model``)."""

    def __init__(self, model_dir: str | Path, device: str = "auto", dtype: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = resolve_device(device)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=resolve_dtype(dtype, self.device))
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self._setup(model.to(self.device), tokenizer)

    @classmethod
    def from_model(cls, model, tokenizer) -> Generator:
        generator = cls.__new__(cls)
        generator.device = str(next(model.parameters()).device.type)
        generator._setup(model, tokenizer)
        return generator

    def _setup(self, model, tokenizer) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id not in eos_ids:
            eos_ids.insert(0, tokenizer.eos_token_id)
        self.eos_token_ids = eos_ids

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])

    @torch.no_grad()
    def generate(
        self, prompts: list[list[dict]], max_new_tokens: int | Sequence[int] = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = 8,
    ) -> list[str]:
        """Greedy answers, one per prompt, in order; only the new tokens, special tokens removed.

        ``max_new_tokens`` is one budget for all, or one per prompt (the gate scores every suite of a
        version in one pass: skills and probes have different budgets). A row's answer is what it would
        be generated alone with its own budget: each row stops at EOS or at its budget, and the batch
        stops when every row has.
        """
        budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(budgets) != len(prompts):
            raise ValueError(f"{len(budgets)} max_new_tokens for {len(prompts)} prompts")
        encoded = [self.prompt_ids(messages) for messages in prompts]  # tokenized once, never per batch
        # Batches of one budget and similar lengths: a batch runs as long as its longest budget needs,
        # and each row costs its padding. The order is restored below.
        order = sorted(range(len(encoded)), key=lambda i: (-budgets[i], -len(encoded[i])))
        answers: list[str | None] = [None] * len(encoded)
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            input_ids, attention_mask = self._left_pad([encoded[i] for i in indices])
            row_budgets = [budgets[i] for i in indices]
            longest = max(row_budgets)
            stopping = StoppingCriteriaList([_RowBudgets(row_budgets, input_ids.shape[1])]) \
                if min(row_budgets) < longest else None
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=longest,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=self.eos_token_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=stopping,
            )
            new_tokens = output[:, input_ids.shape[1] :]
            for row, index in enumerate(indices):
                tokens = new_tokens[row].tolist()[: budgets[index]]
                answers[index] = self.tokenizer.decode(self._until_eos(tokens), skip_special_tokens=True).strip()
        return answers  # type: ignore[return-value]

    @torch.no_grad()
    def mean_logprob(self, prompts: list[list[dict]], completions: list[str], batch_size: int = 8) -> list[float]:
        """Mean per-token log-probability of each completion as the assistant's answer to its prompt."""
        scores: list[float] = []
        for start in range(0, len(prompts), batch_size):
            pairs = list(zip(prompts[start : start + batch_size], completions[start : start + batch_size], strict=True))
            prompt_lists = [self.prompt_ids(messages) for messages, _ in pairs]
            completion_lists = [
                self.tokenizer(text, add_special_tokens=False)["input_ids"] for _, text in pairs
            ]
            input_ids, attention_mask = self._left_pad([p + c for p, c in zip(prompt_lists, completion_lists, strict=True)])
            # Positions count real tokens only, so a left-padded row scores exactly as it would alone.
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
            logprobs = torch.log_softmax(logits.float(), -1)
            for row, completion in enumerate(completion_lists):
                length = len(completion)
                if length == 0:
                    scores.append(float("nan"))
                    continue
                # Logits at position t predict token t+1; the completion fills the last `length` positions.
                predicted = logprobs[row, -length - 1 : -1]
                targets = input_ids[row, -length:]
                scores.append(predicted.gather(-1, targets.unsqueeze(-1)).mean().item())
        return scores

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(seq) for seq in sequences)
        pad_id = self.tokenizer.pad_token_id
        ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        return ids.to(self.model.device), mask.to(self.model.device)

    def _until_eos(self, tokens: list[int]) -> list[int]:
        for position, token in enumerate(tokens):
            if token in self.eos_token_ids:
                return tokens[:position]
        return tokens


class _RowBudgets(StoppingCriteria):
    """Each row of a batch is done once it has its own number of new tokens (transformers then pads it
    while the others go on, and ends the batch when all rows are done)."""

    def __init__(self, budgets: list[int], prompt_width: int):
        self.budgets = torch.tensor(budgets)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return (input_ids.shape[1] - self.prompt_width) >= self.budgets.to(input_ids.device)
