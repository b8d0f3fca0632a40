"""Dynamic batching over transformers on CPU: requests queue, one thread decodes them together.

The batcher takes up to `max_batch` waiting completions of the same loaded version (waiting up to `wait_s`
for more to arrive), left-pads their prompts and runs its own step loop with the KV cache: one forward pass
advances every row by one token, so N concurrent requests cost about as many passes as the longest of them
instead of the sum. A row leaves the batch (and the cache) at EOS, at its max_tokens, or when its client
goes away; each row's new text is handed to its request as it is produced.

A batch that has started admits no newcomers (static within a batch, dynamic between batches): joining a
running batch means splicing KV caches of different lengths, which is what vLLM is for (the GPU option).

Django-free: a `LoadedVersion` is built from a model folder; the service decides which folder.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workers.engine.generation import Generator

log = logging.getLogger(__name__)
GREEDY_BELOW = 1e-4


class LoadedVersion:
    """One model version in memory, counted while requests use it, so that a version the service lets go
    (production moved on, or it fell out of the LRU) is freed only when its last request has finished."""

    def __init__(self, number: int, generator: Generator):
        self.number = number
        self.generator: Generator | None = generator
        self.context_length = getattr(generator.model.config, "max_position_embeddings", None) or 2048
        self.users = 0
        self.retired = False
        self._lock = threading.Lock()

    @classmethod
    def load(cls, number: int, model_dir: str | Path) -> LoadedVersion:
        return cls(number, Generator(model_dir, device="cpu"))

    @property
    def freed(self) -> bool:
        return self.generator is None

    def acquire(self) -> bool:
        with self._lock:
            if self.retired:
                return False
            self.users += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.users -= 1
            self._free_if_unused()

    def retire(self) -> None:
        with self._lock:
            self.retired = True
            self._free_if_unused()

    def _free_if_unused(self) -> None:
        if self.retired and self.users == 0 and self.generator is not None:
            log.info("v%s freed", self.number)
            self.generator = None  # the last reference to the weights: torch returns their memory


@dataclass
class Finished:
    reason: str  # "stop" (EOS), "length" (max_tokens) or "cancelled" (the client went away)
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(eq=False)
class Completion:
    """One request's row. `emit` receives each new piece of text (str), then a Finished or an Exception;
    it is called from the batcher thread, so it must hand off quickly (the service posts to an asyncio queue).
    The caller acquires `version` before submitting; the batcher releases it when the row leaves its batch
    (not the request handler: a client that goes away must not free weights a running batch still reads)."""

    version: LoadedVersion
    prompt_ids: list[int]
    max_tokens: int
    emit: Callable[[object], None]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    cancelled: bool = False
    tokens: list[int] = field(default_factory=list)
    sent: str = ""

    def __post_init__(self):
        self.rng = torch.Generator().manual_seed(self.seed if self.seed is not None else random.getrandbits(63))

    def pick(self, logits: torch.Tensor) -> int:
        """The next token from this row's last logits: argmax at temperature 0, else a (top-p) sample."""
        # A temperature this close to 0 is greedy (dividing by it would overflow to inf and NaN probabilities,
        # failing the sample — and with it every row of the batch).
        if self.temperature < GREEDY_BELOW:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if not bool(torch.isfinite(probs).all()):
            return int(logits.argmax())
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            # Keep the smallest prefix whose mass reaches top_p (always at least the most likely token).
            outside = sorted_probs.cumsum(-1) - sorted_probs >= self.top_p
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs.masked_fill(outside, 0.0))
        return int(torch.multinomial(probs, 1, generator=self.rng))

    def accept(self, token: int) -> Finished | None:
        """Take the row's next token; say how the row finished, or None while it goes on."""
        generator = self.version.generator
        if self.cancelled:
            return self._finish("cancelled")
        if token in generator.eos_token_ids:
            return self._finish("stop")
        self.tokens.append(token)
        text = generator.tokenizer.decode(self.tokens, skip_special_tokens=True)
        # A multi-byte character split across tokens decodes to U+FFFD until its last byte arrives.
        if not text.endswith("\ufffd") and text.startswith(self.sent) and len(text) > len(self.sent):
            self.emit(text[len(self.sent):])
            self.sent = text
        if len(self.tokens) >= self.max_tokens:
            return self._finish("length")
        return None

    def _finish(self, reason: str) -> Finished:
        text = self.version.generator.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self.emit(text[len(self.sent):])
        return Finished(reason, text, len(self.prompt_ids), len(self.tokens))


class Batcher:
    """The queue and the thread that drains it. `stats` counts forward passes, the rows they carried, the
    batches and the tokens produced, so a test (or /metrics) can see that concurrent requests shared passes."""

    def __init__(self, *, max_batch: int, wait_s: float):
        self.max_batch, self.wait_s = max_batch, wait_s
        self.pending: collections.deque[Completion] = collections.deque()
        self.cond = threading.Condition()
        self.stats = {"forward_passes": 0, "rows_forwarded": 0, "batches": 0, "completions": 0,
                      "tokens_generated": 0, "largest_batch": 0}
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="batcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self._stop = True
            self.cond.notify_all()
        self.thread.join(timeout=30)

    def submit(self, completion: Completion) -> None:
        with self.cond:
            self.pending.append(completion)
            self.cond.notify_all()

    def _take(self) -> list[Completion] | None:
        """The next batch: the oldest waiting completion and up to max_batch-1 more on the same version,
        waiting at most wait_s (from the oldest's turn) for the batch to fill."""
        with self.cond:
            while not self.pending and not self._stop:
                self.cond.wait()
            if self._stop:
                return None
            version = self.pending[0].version
            deadline = time.monotonic() + self.wait_s
            while (sum(c.version is version for c in self.pending) < self.max_batch and not self._stop
                   and (left := deadline - time.monotonic()) > 0):
                self.cond.wait(left)
            batch = [c for c in self.pending if c.version is version][: self.max_batch]
            for completion in batch:
                self.pending.remove(completion)
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            done = set()
            try:
                for completion, finished in self.decode(batch):
                    done.add(completion)
                    completion.version.release()
                    completion.emit(finished)
            except Exception as error:  # one bad batch must not take the service down
                log.exception("a batch of %d failed", len(batch))
                for completion in batch:
                    if completion not in done:
                        completion.version.release()
                        completion.emit(error)

    @torch.no_grad()
    def decode(self, batch: list[Completion]):
        """Decode `batch` together; yield (completion, Finished) as each row ends."""
        from transformers import DynamicCache

        generator = batch[0].version.generator
        model = generator.model
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
        width = max(len(c.prompt_ids) for c in batch)
        pad_id = generator.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad_id] * (width - len(c.prompt_ids)) + c.prompt_ids for c in batch])
        mask = torch.tensor([[0] * (width - len(c.prompt_ids)) + [1] * len(c.prompt_ids) for c in batch])
        # Positions count real tokens only, so a left-padded row decodes exactly as it would alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        rows = list(batch)
        while rows:
            # Only the last position's logits: the prompt's forward would otherwise project every prompt
            # position onto the vocabulary (rows x prompt x vocab floats) to keep one.
            logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache,
                           use_cache=True, logits_to_keep=1).logits[:, -1, :].float()
            self.stats["forward_passes"] += 1
            self.stats["rows_forwarded"] += len(rows)
            keep = []
            for index, completion in enumerate(rows):
                finished = completion.accept(completion.pick(logits[index]))
                if finished is None:
                    keep.append(index)
                    self.stats["tokens_generated"] += 1
                    continue
                self.stats["completions"] += 1
                self.stats["tokens_generated"] += finished.reason == "length"
                yield completion, finished
            if len(keep) < len(rows):
                if not keep:
                    return
                # Finished rows leave the cache too, so the remaining rows stop paying for them.
                cache.batch_select_indices(torch.tensor(keep))
                rows, mask, positions = [rows[i] for i in keep], mask[keep], positions[keep]
            input_ids = torch.tensor([[c.tokens[-1]] for c in rows])
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], dim=-1)
            positions = positions[:, -1:] + 1
