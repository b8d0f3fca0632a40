"""One job over two processes (torchrun, gloo on the CPU) against the same job in one process: the same SFT
loss curve, an SDFT candidate written once, progress, cancellation, failure and resume across the process
boundary. The settings that pick DeepSpeed or vLLM are refused clearly where those are not installed, and
the vLLM switch reaches TRL's SDFTConfig."""

from __future__ import annotations

import json
import math
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.engine.test_training import RecordingObserver, small_config
from workers.engine import trainers
from workers.engine.contract.scaling import Scaling, ScalingError
from workers.engine.data import TrainRow
from workers.engine.distributed import LAUNCH_DIR, SPEC, DistributedTrainingFailed, train_job
from workers.engine.trainers import MixedBatchSampler
from workers.engine.training import TrainingCancelled, _training_arguments, _vllm_arguments, train

TWO = Scaling(processes=2)


def run(tiny_model_dir, root: Path, config, scaling=TWO, observer=None, rows=None):
    from tests.fixtures.models import policy_rows

    observer = observer or RecordingObserver()
    result = train_job(base_dir=tiny_model_dir, rows=rows or policy_rows(), config=config,
                       output_dir=root / "candidate", work_dir=root / "work", observer=observer, scaling=scaling)
    return result, observer


def ranks_alive(work_dir: Path) -> list:
    spec = str(work_dir / LAUNCH_DIR / SPEC)
    return [proc for proc in psutil.process_iter(["cmdline"]) if spec in " ".join(proc.info["cmdline"] or [])]


@pytest.mark.parametrize("overrides", [
    {},
    # the replay baseline (anchors answered by the starting model) with two micro-batches per step:
    # MixedBatchSampler's shares of each micro-batch, laid out for SFT's loader
    {"anchor_ratio": 1.0, "anchor_max_new_tokens": 8, "batch_size": 2, "gradient_accumulation_steps": 2},
], ids=["sft", "sft-replay-anchors-accumulating"])
def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(tiny_model_dir, tmp_path, overrides):
    # given the same SFT job (a high learning rate, so the curve moves)
    config = small_config(**{"method": "sft", "batch_size": 4, "max_steps": 4, "learning_rate": 1e-2, **overrides})
    # when it trains in one process and over two (each taking half of every batch)
    one, one_seen = run(tiny_model_dir, tmp_path / "one", config, scaling=Scaling())
    two, two_seen = run(tiny_model_dir, tmp_path / "two", config)
    # then every logged step has the same loss, and the adapters agree
    one_curve, two_curve = [p.loss for p in one_seen.progress], [p.loss for p in two_seen.progress]
    assert [p.step for p in two_seen.progress] == [1, 2, 3, 4]
    assert two_curve == pytest.approx(one_curve, rel=1e-3), (one_curve, two_curve)
    assert max(one_curve) - min(one_curve) > 0.5, "the curve must move, or equal curves prove nothing"
    assert two.metrics["processes"] == 2 and "processes" not in one.metrics
    first = load_file(f"{one.output_dir}/adapter/adapter_model.safetensors")
    second = load_file(f"{two.output_dir}/adapter/adapter_model.safetensors")
    assert first.keys() == second.keys()
    assert any(tensor.abs().sum() > 0 for name, tensor in first.items() if "lora_B" in name)
    for name in first:  # Adam divides by the root of tiny second moments: float rounding shows in a few weights
        torch.testing.assert_close(second[name], first[name], rtol=1e-2, atol=1e-3)


@pytest.fixture(scope="module")
def sdft_two(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sdft-two")
    result, observer = run(tiny_model_dir, root, small_config(method="sdft", batch_size=4, max_steps=3))
    return root, result, observer


def test_two_process_sdft_trains_and_reports_every_step(sdft_two):
    # (sampling differs per rank, so the curve is not one process's: it must be finite and non-trivial)
    _, result, observer = sdft_two
    assert result.steps == 3 and [p.step for p in observer.progress] == [1, 2, 3]
    for progress in observer.progress:
        assert math.isfinite(progress.loss) and progress.loss > 1e-3
        assert progress.kl is not None and math.isfinite(progress.kl) and progress.total_steps == 3
    assert result.metrics["processes"] == 2 and result.metrics["anchors_per_step"] == 4


def test_two_process_sdft_writes_one_candidate_whose_weights_moved(sdft_two, tiny_model_dir):
    root, result, _ = sdft_two
    adapter = load_file(f"{result.output_dir}/adapter/adapter_model.safetensors")
    assert any(tensor.abs().sum() > 0 for name, tensor in adapter.items() if "lora_B" in name)
    assert not any("teacher" in name for name in adapter)
    merged = AutoModelForCausalLM.from_pretrained(result.output_dir).state_dict()
    parent = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert any(not torch.equal(tensor, parent[name]) for name, tensor in merged.items())
    manifest = json.loads((Path(result.output_dir) / "accrete.json").read_text())
    assert manifest["checksums"].items() <= result.checksums.items() and manifest["metrics"]["processes"] == 2
    assert [path.name for path in root.iterdir() if "candidate" in path.name] == ["candidate"]
    assert not ranks_alive(root / "work")


def test_a_two_process_run_killed_after_a_checkpoint_resumes_from_it(tiny_model_dir, tmp_path, monkeypatch):
    # given a two-process SDFT job that checkpoints every 2 steps, whose worker dies after step 3
    config = small_config(method="sdft", batch_size=4, max_steps=8, checkpoint_every=2)
    with pytest.raises(RuntimeError, match="worker died"):
        run(tiny_model_dir, tmp_path, config, observer=RecordingObserver(fail_after_step=3))
    # then the ranks are gone, nothing was published, and the checkpoint holds the EMA teacher
    work = tmp_path / "work"
    assert not ranks_alive(work)
    assert not (tmp_path / "candidate").exists()
    assert (work / "checkpoint-2" / trainers._EMATeacherAdapter.FILE_NAME).is_file()
    # when the job runs again (the ranks may have reached a later checkpoint before they were stopped)
    result, observer = run(tiny_model_dir, tmp_path, config)
    resumed = result.metrics["resumed_from_step"]
    # then it continues from the newest checkpoint and finishes with the same step count
    assert resumed in (2, 4, 6)
    assert [p.step for p in observer.progress] == list(range(resumed + 1, 9))
    assert result.steps == 8 and Path(result.output_dir, "accrete.json").is_file()


def test_cancelling_stops_every_rank_and_writes_nothing(tiny_model_dir, tmp_path):
    observer = RecordingObserver(cancel_after_step=1)
    with pytest.raises(TrainingCancelled, match="cancelled at step"):
        run(tiny_model_dir, tmp_path, small_config(method="sft", batch_size=4, max_steps=200), observer=observer)
    assert 1 <= observer.progress[-1].step < 200
    assert not (tmp_path / "candidate").exists() and not list(tmp_path.glob(".candidate*"))
    assert not ranks_alive(tmp_path / "work")


def test_a_failing_rank_fails_the_job_with_its_own_error(tiny_model_dir, tmp_path):
    from tests.fixtures.models import policy_rows

    too_long = TrainRow(prompt="Summarise the archive policy.", demonstration="archive " * 2100)
    with pytest.raises(DistributedTrainingFailed, match=r"rank \d of 2 failed: DataTooLongError: row 8: "):
        run(tiny_model_dir, tmp_path, small_config(batch_size=4, max_completion_length=16),
            rows=policy_rows() + [too_long])
    assert not (tmp_path / "candidate").exists()
    assert not ranks_alive(tmp_path / "work")


RANK_ONE_DIES = """
import os
if os.environ.get("RANK") == "1":
    from workers.engine import trainers

    step = trainers.AccreteSFTTrainer.training_step

    def dying(self, *args, **kwargs):
        if self.state.global_step == 2:
            raise RuntimeError("rank 1 lost its device")
        return step(self, *args, **kwargs)

    trainers.AccreteSFTTrainer.training_step = dying
"""


def test_a_rank_that_crashes_mid_training_fails_the_job_with_its_error(tiny_model_dir, tmp_path, monkeypatch):
    # given a rank that will crash in step 3 (a sitecustomize only the ranks' interpreters load)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RANK_ONE_DIES)
    monkeypatch.setenv("PYTHONPATH", str(hook))
    observer = RecordingObserver()
    # when the job runs over two processes
    with pytest.raises(DistributedTrainingFailed, match="rank 1 of 2 failed: RuntimeError: rank 1 lost its device"):
        run(tiny_model_dir, tmp_path, small_config(method="sft", batch_size=4, max_steps=6, checkpoint_every=1),
            observer=observer)
    # then the other rank stopped too, and no candidate exists, whole or half-written
    assert [p.step for p in observer.progress] == [1, 2]
    assert not (tmp_path / "candidate").exists() and not list(tmp_path.glob(".candidate*"))
    assert not ranks_alive(tmp_path / "work")


# ---- refusals, before any process starts --------------------------------------------------------------


@pytest.mark.parametrize(("scaling", "message"), [
    (dict(processes=0), r"ACCRETE_TRAIN_PROCESSES=0 is invalid: a whole number of training processes"),
    (dict(strategy="fsdp"), r"ACCRETE_TRAIN_DISTRIBUTED='fsdp' is invalid: one of ddp, deepspeed-zero2, deepspeed-zero3"),
    (dict(vllm="server"), r"ACCRETE_TRAIN_VLLM='server' is invalid: one of off, colocate"),
    (dict(vllm_gpu_memory_utilization=1.5), r"ACCRETE_TRAIN_VLLM_GPU_MEMORY=1.5 is invalid"),
])
def test_a_bad_scaling_setting_names_the_setting(scaling, message):
    with pytest.raises(ScalingError, match=message):
        Scaling(**scaling)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ScalingError, match=r"ACCRETE_TRAIN_PROCESSES=2 .* batch_size is 3, which does not divide evenly"):
        run(tiny_model_dir, tmp_path, small_config(method="sft", batch_size=3))
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(("scaling", "message"), [
    (Scaling(processes=2, strategy="deepspeed-zero3"),
     r"ACCRETE_TRAIN_DISTRIBUTED=deepspeed-zero3 needs DeepSpeed, .*`pip install deepspeed`"),
    (Scaling(vllm="colocate"), r"ACCRETE_TRAIN_VLLM=colocate needs vLLM, .*`pip install vllm`"),
])
def test_deepspeed_or_vllm_without_the_library_is_refused_by_name(tiny_model_dir, tmp_path, scaling, message):
    with pytest.raises(ScalingError, match=message):
        run(tiny_model_dir, tmp_path, small_config(batch_size=4), scaling=scaling)


def test_a_scaled_train_outside_a_process_group_is_refused(tiny_model_dir, tmp_path, rows):
    with pytest.raises(ScalingError, match=r"one of 2 ranks .* start the job through workers.engine.distributed"):
        train(base_dir=tiny_model_dir, rows=rows, config=small_config(), output_dir=tmp_path / "out",
              work_dir=tmp_path / "work", scaling=TWO)


def test_zero3_refuses_the_ema_teacher_adapter_it_would_shard(tiny_model_dir, tmp_path, rows, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ScalingError, match="deepspeed-zero3 shards the LoRA weights the EMA teacher adapter copies"):
        train(base_dir=tiny_model_dir, rows=rows, config=small_config(), output_dir=tmp_path / "out",
              work_dir=tmp_path / "work", scaling=Scaling(processes=2, strategy="deepspeed-zero3"))


def test_deepspeed_gets_a_zero_config_the_trainer_completes():
    config = small_config(batch_size=4)
    common = _training_arguments(config, Path("/tmp/work"), "cuda", torch.bfloat16, 3,
                                 Scaling(processes=2, strategy="deepspeed-zero3"))
    assert common["per_device_train_batch_size"] == 2 and common["ddp_backend"] == "nccl"
    assert common["deepspeed"]["zero_optimization"]["stage"] == 3
    assert common["deepspeed"]["train_micro_batch_size_per_gpu"] == "auto"  # the Trainer fills it in: no disagreement
    assert "deepspeed" not in _training_arguments(config, Path("/tmp/work"), "cpu", torch.float32, 3, TWO)


def test_the_vllm_switch_reaches_sdft_config(tiny_model_dir, tmp_path, rows, monkeypatch):
    import dataclasses

    from trl.experimental.sdft import SDFTConfig

    # given a worker set to generate SDFT rollouts with vLLM colocated on its GPU
    scaling = Scaling(vllm="colocate", vllm_gpu_memory_utilization=0.45, vllm_sleep=True)
    captured = {}

    class Captured(Exception):
        pass

    def capture(**kwargs):
        captured.update(kwargs)
        raise Captured  # a real SDFTConfig would join torchrun's process group, and vLLM is not installed here

    monkeypatch.setenv("WORLD_SIZE", "1")  # as torchrun runs the one rank
    monkeypatch.setattr(trainers, "SDFTConfig", capture)
    # when the rank builds its trainer
    with pytest.raises(Captured):
        train(base_dir=tiny_model_dir, rows=rows, config=small_config(device="cpu"), output_dir=tmp_path / "out",
              work_dir=tmp_path / "work", scaling=scaling)
    # then TRL's SDFTConfig is asked for vLLM in colocate mode with the worker's share of the GPU
    assert captured["use_vllm"] is True and captured["vllm_mode"] == "colocate"
    assert captured["vllm_gpu_memory_utilization"] == 0.45 and captured["vllm_enable_sleep_mode"] is True
    fields = {field.name for field in dataclasses.fields(SDFTConfig)}
    assert {"use_vllm", "vllm_mode", "vllm_gpu_memory_utilization", "vllm_enable_sleep_mode"} <= fields
    assert _vllm_arguments(Scaling()) == {}  # off by default


# ---- the sampler's shares: the same rows in every step, however many ranks ---------------------------


@pytest.mark.parametrize("rank_major", [True, False], ids=["sdft-loader", "sft-loader"])
def test_each_step_sees_the_same_rows_over_two_ranks_as_over_one(rank_major):
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    common = dict(n_skill=8, n_anchor=6, skill_per_batch=4, anchors_per_batch=2, micro_batches_per_step=2, steps=3,
                  seed=5)
    repeat = 2 if rank_major else 1  # SDFT's loader reads a step's generation batch `repeat` times
    per_rank_batch = 3 * (2 if rank_major else 1)  # (4 + 2) / 2 rows, a whole step's micro-batches for SDFT
    one = list(MixedBatchSampler(**common, repeat=repeat))
    two = MixedBatchSampler(**common, repeat=repeat, ranks=2, rank_major=rank_major)
    shards = [list(BatchSamplerShard(BatchSampler(two, per_rank_batch, drop_last=False), num_processes=2,
                                     process_index=rank)) for rank in range(2)]
    step_rows = 6 * 2 * repeat
    for step in range(3):
        single = one[step * step_rows:(step + 1) * step_rows]
        batches_per_step = len(shards[0]) // 3
        both = [index for shard in shards for batch in shard[step * batches_per_step:(step + 1) * batches_per_step]
                for index in batch]
        assert sorted(both) == sorted(single)
        for shard in shards:  # each rank: half the skill rows and half the anchors of every micro-batch
            rows = [index for batch in shard[step * batches_per_step:(step + 1) * batches_per_step] for index in batch]
            assert sum(index < 8 for index in rows) == 2 * len(rows) // 3


def test_one_rank_keeps_the_single_process_order():
    common = dict(n_skill=8, n_anchor=6, skill_per_batch=4, anchors_per_batch=2, micro_batches_per_step=2, steps=3,
                  repeat=2, seed=5)
    assert list(MixedBatchSampler(**common)) == list(MixedBatchSampler(**common, ranks=1, rank_major=False))


# ---- on GPUs (skipped here: no CUDA, no DeepSpeed, no vLLM) --------------------------------------------

def _gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 2, reason="needs two CUDA GPUs")
@pytest.mark.parametrize("strategy", [
    "ddp",
    pytest.param("deepspeed-zero2", marks=pytest.mark.skipif(not _installed("deepspeed"), reason="needs deepspeed")),
    pytest.param("deepspeed-zero3", marks=pytest.mark.skipif(not _installed("deepspeed"), reason="needs deepspeed")),
])
def test_two_gpus_follow_the_loss_curve_of_one(tiny_model_dir, tmp_path, strategy):
    config = small_config(method="sft", batch_size=4, max_steps=4, learning_rate=1e-2, device="cuda", dtype="float32")
    _, one = run(tiny_model_dir, tmp_path / "one", config, scaling=Scaling())
    two, two_seen = run(tiny_model_dir, tmp_path / "two", config, scaling=Scaling(processes=2, strategy=strategy))
    assert [p.loss for p in two_seen.progress] == pytest.approx([p.loss for p in one.progress], rel=1e-3)
    AutoModelForCausalLM.from_pretrained(two.output_dir)


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 1 or not _installed("vllm"), reason="needs a CUDA GPU and vllm")
def test_sdft_generates_its_rollouts_with_colocated_vllm(tiny_model_dir, tmp_path):
    result, observer = run(tiny_model_dir, tmp_path, small_config(method="sdft", batch_size=4, max_steps=3,
                                                                  device="cuda"),
                           scaling=Scaling(vllm="colocate", vllm_gpu_memory_utilization=0.2))
    assert result.steps == 3 and all(math.isfinite(p.loss) and p.loss > 1e-3 for p in observer.progress)


def test_each_rank_samples_its_rollouts_from_its_own_random_stream():
    from types import SimpleNamespace

    from workers.engine.trainers import _RankSamplingSeed

    draws = []
    for rank in (0, 1):
        torch.manual_seed(5)  # what the trainer set on every rank
        _RankSamplingSeed().on_train_begin(SimpleNamespace(world_size=2, process_index=rank, seed=5), None, None)
        draws.append(torch.rand(4))
    assert not torch.equal(draws[0], draws[1])

    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    _RankSamplingSeed().on_train_begin(SimpleNamespace(world_size=1, process_index=0, seed=5), None, None)
    assert torch.equal(torch.rand(4), expected)  # one process: the stream is untouched
