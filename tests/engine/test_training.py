"""End-to-end training on a tiny random Llama: SDFT and SFT write a loadable candidate, and the
run is cancellable, resumable and refuses data TRL would truncate."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from workers.engine import trainers
from workers.engine.artifacts import tree_checksum
from workers.engine.contract.config import TrainConfig
from workers.engine.data import DataTooLongError, TrainRow
from workers.engine.training import TrainingCancelled, TrainingObserver, train


class RecordingObserver(TrainingObserver):
    def __init__(self, cancel_after_step: int | None = None, fail_after_step: int | None = None):
        self.progress = []
        self.checkpoints = []
        self.cancel_after_step = cancel_after_step
        self.fail_after_step = fail_after_step

    def on_progress(self, progress):
        self.progress.append(progress)
        if self.fail_after_step is not None and progress.step >= self.fail_after_step:
            raise RuntimeError("worker died")

    def should_cancel(self):
        return bool(self.cancel_after_step and self.progress and self.progress[-1].step >= self.cancel_after_step)

    def on_checkpoint(self, step, path):
        self.checkpoints.append((step, path))


def small_config(**overrides) -> TrainConfig:
    values = dict(batch_size=2, max_steps=3, seed=1)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def sdft_run(tiny_model_dir, tmp_path_factory):
    from tests.fixtures.models import policy_rows

    base_checksum = tree_checksum(tiny_model_dir)
    root = tmp_path_factory.mktemp("sdft-run")
    observer = RecordingObserver()
    result = train(
        base_dir=tiny_model_dir, rows=policy_rows(), config=small_config(method="sdft"),
        output_dir=root / "candidate", work_dir=root / "work", observer=observer,
    )
    return result, observer, base_checksum


def test_sdft_run_reports_a_finite_nontrivial_kl_every_step(sdft_run):
    result, observer, _ = sdft_run
    assert result.steps == 3
    assert [p.step for p in observer.progress] == [1, 2, 3]
    for progress in observer.progress:
        assert math.isfinite(progress.loss) and progress.loss > 1e-3
        assert progress.kl is not None and math.isfinite(progress.kl)
        assert progress.total_steps == 3 and progress.peak_memory_bytes > 0 and progress.tokens_per_second > 0
    assert result.metrics["mean_kl"] > 1e-3
    assert result.config["method"] == "sdft" and result.config["distillation_alpha"] == 0.0


def test_sdft_changes_the_adapter_and_the_merged_weights(sdft_run, tiny_model_dir):
    result, _, _ = sdft_run
    adapter = load_file(f"{result.output_dir}/adapter/adapter_model.safetensors")
    lora_b = [tensor for name, tensor in adapter.items() if "lora_B" in name]
    # LoRA's B starts at exactly zero, so any non-zero B is a trained weight.
    assert lora_b and any(tensor.abs().sum() > 0 for tensor in lora_b)
    assert not any("teacher" in name for name in adapter), "the EMA teacher must not leak into the adapter"

    merged = AutoModelForCausalLM.from_pretrained(result.output_dir)
    parent = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    parent_weights = parent.state_dict()
    changed = [name for name, tensor in merged.state_dict().items() if not torch.equal(tensor, parent_weights[name])]
    assert changed, "merged weights are identical to the parent"


def test_the_base_model_is_never_modified(sdft_run, tiny_model_dir):
    _, _, base_checksum = sdft_run
    assert tree_checksum(tiny_model_dir) == base_checksum


def test_the_candidate_carries_its_config_metrics_and_checksums(sdft_run):
    import json
    from pathlib import Path

    result, _, _ = sdft_run
    manifest = json.loads((Path(result.output_dir) / "accrete.json").read_text())
    assert manifest["config"] == result.config
    assert manifest["metrics"]["steps"] == 3
    assert "model.safetensors" in manifest["checksums"] and "adapter/adapter_model.safetensors" in manifest["checksums"]
    assert manifest["checksums"]["model.safetensors"] == result.checksums["model.safetensors"]
    assert not list(Path(result.output_dir).parent.glob(".candidate.tmp-*"))


def test_sft_baseline_trains_the_same_adapter_on_the_same_rows(tiny_model_dir, tmp_path, rows):
    observer = RecordingObserver()
    result = train(
        base_dir=tiny_model_dir, rows=rows, config=small_config(method="sft"),
        output_dir=tmp_path / "candidate", work_dir=tmp_path / "work", observer=observer,
    )
    assert result.steps == 3
    assert all(math.isfinite(p.loss) and p.loss > 1e-3 and p.kl is None for p in observer.progress)
    adapter = load_file(f"{result.output_dir}/adapter/adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for name, t in adapter.items() if "lora_B" in name)
    AutoModelForCausalLM.from_pretrained(result.output_dir)


def test_cancelling_stops_within_one_step_and_writes_nothing(tiny_model_dir, tmp_path, rows):
    observer = RecordingObserver(cancel_after_step=1)
    with pytest.raises(TrainingCancelled):
        train(
            base_dir=tiny_model_dir, rows=rows, config=small_config(max_steps=50),
            output_dir=tmp_path / "candidate", work_dir=tmp_path / "work", observer=observer,
        )
    # Asked after step 1's log; step 2's end is the next check.
    assert observer.progress[-1].step <= 2
    assert not (tmp_path / "candidate").exists()
    assert not list(tmp_path.glob(".candidate*"))


def test_an_interrupted_run_resumes_from_its_checkpoint(tiny_model_dir, tmp_path, rows, monkeypatch):
    restored = []
    original = trainers._EMATeacherAdapter._initialize_teacher_adapter

    def spy(self):
        original(self)
        restored.append(self.restored)

    monkeypatch.setattr(trainers._EMATeacherAdapter, "_initialize_teacher_adapter", spy)
    config = small_config(max_steps=4, checkpoint_every=2, teacher_style="turn")
    work = tmp_path / "work"
    first = RecordingObserver(fail_after_step=3)
    with pytest.raises(RuntimeError, match="worker died"):
        train(base_dir=tiny_model_dir, rows=rows, config=config, output_dir=tmp_path / "out", work_dir=work, observer=first)
    assert not (tmp_path / "out").exists()
    assert [step for step, _ in first.checkpoints] == [2]
    assert (work / "checkpoint-2" / trainers._EMATeacherAdapter.FILE_NAME).is_file()

    second = RecordingObserver()
    result = train(base_dir=tiny_model_dir, rows=rows, config=config, output_dir=tmp_path / "out", work_dir=work, observer=second)
    assert [p.step for p in second.progress] == [3, 4], "the step counter must resume, not restart"
    assert result.steps == 4 and result.metrics["resumed_from_step"] == 2
    assert restored == [False, True], "the EMA teacher must come back from the checkpoint"


@pytest.mark.parametrize(("extra", "limits", "message"), [
    # a teacher prompt that would be truncated
    (TrainRow(prompt="What is the archive policy code?", demonstration="ARC-77 " * 60), {"max_prompt_length": 64},
     r"row 8: the teacher prompt .* is \d+ tokens but max_prompt_length is 64"),
    # a row longer than the context
    (TrainRow(prompt="Summarise the archive policy.", demonstration="archive " * 2100),
     {"max_completion_length": 16}, r"row 8: .* but the model's context is 2048"),
])
def test_a_row_too_long_to_train_on_is_refused(tiny_model_dir, tmp_path, rows, extra, limits, message):
    with pytest.raises(DataTooLongError, match=message):
        train(base_dir=tiny_model_dir, rows=rows + [extra], config=small_config(**limits),
              output_dir=tmp_path / "out", work_dir=tmp_path / "work")
    assert not (tmp_path / "out").exists()


def test_too_few_rows_for_one_step_is_refused(tiny_model_dir, tmp_path, rows):
    with pytest.raises(ValueError, match="2 training rows but one optimizer step takes"):
        train(
            base_dir=tiny_model_dir, rows=rows[:2], config=small_config(batch_size=4),
            output_dir=tmp_path / "out", work_dir=tmp_path / "work",
        )
