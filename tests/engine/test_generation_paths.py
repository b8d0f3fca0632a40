"""Every path that generates decodes with the KV cache and SDPA attention: after the prompt's forward, each
decoding step feeds the model one new token per row, not the whole sequence again (which would make a
step's cost grow with the answer's length). Checked on the real code paths: the evaluation generator, SDFT's
rollouts inside a training step, and the inference service's batcher."""

from __future__ import annotations

import contextlib

from workers.engine import trainers
from workers.engine.contract.config import TrainConfig
from workers.engine.generation import Generator
from workers.engine.training import train

ASK = [{"role": "user", "content": "Which policy code applies to a taxi from the airport?"}]


@contextlib.contextmanager
def forward_widths(model):
    """The input width of every forward of the decoder stack while the block runs."""
    widths: list[int] = []
    inner = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    hook = inner.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        yield widths
    finally:
        hook.remove()


def assert_cached_decoding(widths: list[int], new_tokens: int):
    assert len(widths) >= 2, widths
    prompt, *steps = widths
    assert prompt > 1 and steps == [1] * len(steps), f"a decoding step re-read the sequence: {widths}"
    assert len(steps) <= new_tokens


def test_the_evaluation_generator_decodes_with_the_cache_and_sdpa(tiny_model_dir):
    generator = Generator(tiny_model_dir, device="cpu")
    assert generator.model.config._attn_implementation == "sdpa"

    with forward_widths(generator.model) as widths:
        generator.generate([ASK, ASK], max_new_tokens=6)

    assert_cached_decoding(widths, 6)


def test_sdft_rollouts_decode_with_the_cache_and_sdpa(tiny_model_dir, tmp_path, monkeypatch):
    from tests.fixtures.models import policy_rows

    seen: list[list[int]] = []
    original = trainers.AccreteSDFTTrainer._generate_transformers

    def recorded(self, prompt_ids):
        model = self.accelerator.unwrap_model(self.model)
        assert model.config._attn_implementation == "sdpa"
        with forward_widths(model) as widths:
            result = original(self, prompt_ids)
        seen.append(widths)
        return result

    monkeypatch.setattr(trainers.AccreteSDFTTrainer, "_generate_transformers", recorded)
    config = TrainConfig(method="sdft", batch_size=2, max_steps=2, seed=1, max_completion_length=6, anchor_ratio=0.0)

    train(base_dir=tiny_model_dir, rows=policy_rows(), config=config, output_dir=tmp_path / "out",
          work_dir=tmp_path / "work")

    assert len(seen) == 2  # one rollout per optimizer step
    for widths in seen:
        assert_cached_decoding(widths, 6)


def test_the_inference_service_decodes_with_the_cache(tiny_model_dir):
    from workers.serving.batching import Batcher, Completion, LoadedVersion

    version = LoadedVersion(1, Generator(tiny_model_dir, device="cpu"))
    version.generator.eos_token_ids = []  # both rows run to max_tokens
    batch = []
    for _ in range(2):
        version.acquire()
        batch.append(Completion(version=version, prompt_ids=version.generator.prompt_ids(ASK), max_tokens=5,
                                emit=lambda item: None))

    with forward_widths(version.generator.model) as widths:
        finished = [done for _, done in Batcher(max_batch=2, wait_s=0).decode(batch)]

    assert [done.completion_tokens for done in finished] == [5, 5]
    assert_cached_decoding(widths, 5)

