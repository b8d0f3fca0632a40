"""Retention anchoring on the tiny Llama: what each row's teacher sees, how batches are mixed, how far
anchors are rolled out, which teacher scores an anchor, and the SFT replay baseline."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from workers.engine import trainers
from workers.engine.contract.config import TrainConfig
from workers.engine.contract.prompts import student_messages, teacher_messages
from workers.engine.data import TrainRow
from workers.engine.trainers import MixedBatchSampler
from workers.engine.training import replay_targets, train

ANCHORS = [TrainRow.anchor(f"Tell me one thing about the number {i} and why people like it.") for i in range(9)]


def anchored_config(**overrides) -> TrainConfig:
    values = dict(method="sdft", batch_size=2, max_steps=3, seed=3, anchor_ratio=1.0, anchor_max_new_tokens=5,
                  teacher_style="turn")
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture()
def recorded_batches(monkeypatch):
    """Every training batch the SDFT trainer builds, with its input rows and the trainer's tokenizer."""
    seen = []
    original = trainers.AccreteSDFTTrainer._prepare_training_batch

    def record(self, inputs):
        batch = original(self, inputs)
        seen.append((inputs, batch, self.processing_class))
        return batch

    monkeypatch.setattr(trainers.AccreteSDFTTrainer, "_prepare_training_batch", record)
    return seen


def _ids(tokenizer, messages) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])


def test_an_anchors_teacher_sees_the_plain_prompt_and_a_skill_rows_teacher_sees_the_demonstration(
        tiny_model_dir, tmp_path, rows, recorded_batches):
    # given skill rows and anchors, trained with the "turn" teacher style
    # when one anchored SDFT run trains
    train(base_dir=tiny_model_dir, rows=rows, config=anchored_config(), output_dir=tmp_path / "out",
          work_dir=tmp_path / "work", anchors=ANCHORS)
    # then in every batch each anchor's teacher prompt is token for token the student's prompt,
    # and each skill row's teacher prompt is the prompt with its demonstration in context
    checked = Counter()
    for inputs, batch, tokenizer in recorded_batches:
        completion = batch["completion_ids"].size(1)
        for i, row in enumerate(inputs):
            teacher = batch["teacher_input_ids"][i, :-completion][batch["teacher_attention_mask"][i, :-completion].bool()]
            student = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()]
            demonstration = row["privileged_context"]["demonstration"]
            if row["is_anchor"]:
                assert demonstration == ""
                assert teacher.tolist() == student.tolist() == _ids(tokenizer, student_messages(row["prompt"]))
                checked["anchor"] += 1
            else:
                assert demonstration
                assert teacher.tolist() == _ids(tokenizer, teacher_messages(row["prompt"], demonstration, "turn"))
                assert teacher.tolist() != student.tolist()
                checked["skill"] += 1
    assert checked == {"anchor": 6, "skill": 6}


def test_each_step_mixes_batch_size_skill_rows_with_anchors_and_cuts_each_rollout_to_its_own_budget(
        tiny_model_dir, tmp_path, rows, recorded_batches):
    # given 2 skill rows and 2 anchors per step, anchors rolled out to at most 5 tokens
    result = train(base_dir=tiny_model_dir, rows=rows, config=anchored_config(), output_dir=tmp_path / "out",
                   work_dir=tmp_path / "work", anchors=ANCHORS)
    # then every batch is [skill, skill, anchor, anchor], and each rollout respects its row's budget
    skill_budget = result.metrics["max_completion_length"]
    assert skill_budget > 5
    for inputs, batch, _ in recorded_batches:
        assert [row["is_anchor"] for row in inputs] == [False, False, True, True]
        assert batch["is_anchor"].tolist() == [False, False, True, True]
        lengths = batch["raw_completion_lengths"].tolist()
        assert all(n <= 5 for n in lengths[2:]) and all(n <= skill_budget for n in lengths[:2])
    assert result.metrics["anchors_per_step"] == 2 and result.metrics["anchor_rows"] == len(ANCHORS)
    assert math.isfinite(result.metrics["final_loss"])


def test_paper_pure_sdft_mixes_no_anchors(tiny_model_dir, tmp_path, rows, recorded_batches):
    # given anchor_ratio 0, the paper's objective
    result = train(base_dir=tiny_model_dir, rows=rows, config=anchored_config(anchor_ratio=0.0),
                   output_dir=tmp_path / "out", work_dir=tmp_path / "work", anchors=ANCHORS)
    # then no anchor reaches a batch
    assert result.metrics["anchor_rows"] == 0
    assert not any(row["is_anchor"] for inputs, _, _ in recorded_batches for row in inputs)


@pytest.mark.parametrize("anchor_teacher", ["base", "ema"])
def test_the_anchor_teacher_setting_picks_the_weights_that_score_an_anchor(
        tiny_model_dir, tmp_path, rows, monkeypatch, anchor_teacher):
    # given a fast learning rate, so that after a step the student and its EMA teacher leave the base model
    from trl.trainer.utils import use_adapter

    matches = []
    original = trainers.AccreteSDFTTrainer._compute_teacher_student_logits

    def compare(self, model, teacher_model, inputs):
        logits = original(self, model, teacher_model, inputs)
        anchor = inputs["is_anchor"]
        with torch.no_grad(), use_adapter(self.accelerator.unwrap_model(teacher_model), adapter_name=None):
            base = self._forward_logits(teacher_model, inputs["teacher_input_ids"][anchor],
                                        inputs["teacher_attention_mask"][anchor], inputs["completion_ids"].size(1))
        matches.append(torch.allclose(logits.teacher_logits[anchor], base, atol=1e-4))
        return logits

    monkeypatch.setattr(trainers.AccreteSDFTTrainer, "_compute_teacher_student_logits", compare)
    config = anchored_config(anchor_teacher=anchor_teacher, learning_rate=1e-2, teacher_update_rate=0.5,
                             max_steps=4, warmup_steps=0)
    train(base_dir=tiny_model_dir, rows=rows, config=config, output_dir=tmp_path / "out",
          work_dir=tmp_path / "work", anchors=ANCHORS)
    # then "base" scores anchors with the starting model at every step; "ema" with the moving teacher,
    # which equals the base only before the first update
    if anchor_teacher == "base":
        assert all(matches)
    else:
        assert matches[0] and not any(matches[2:])


def test_the_mixed_sampler_shows_every_skill_row_once_per_epoch_and_cycles_the_whole_pool():
    # given 8 skill rows, 5 anchors, batches of 4 + 2, 4 steps (two epochs of skill rows)
    sampler = MixedBatchSampler(n_skill=8, n_anchor=5, skill_per_batch=4, anchors_per_batch=2,
                                micro_batches_per_step=1, steps=4, repeat=1, seed=7)
    order = list(sampler)
    # then each batch is 4 skill indices then 2 anchor indices, each epoch covers every skill row
    assert len(order) == len(sampler) == 24
    batches = [order[i:i + 6] for i in range(0, 24, 6)]
    assert all(all(i < 8 for i in b[:4]) and all(8 <= i < 13 for i in b[4:]) for b in batches)
    skills = [i for b in batches for i in b[:4]]
    assert sorted(skills[:8]) == sorted(skills[8:]) == list(range(8))
    anchors = [i for b in batches for i in b[4:]]
    assert sorted(anchors[:5]) == list(range(8, 13))
    # and the order is the same for the same seed (a resumed job replays it) and differs for another
    assert list(sampler) == order
    assert list(MixedBatchSampler(n_skill=8, n_anchor=5, skill_per_batch=4, anchors_per_batch=2,
                                  micro_batches_per_step=1, steps=4, repeat=1, seed=8)) != order


def test_the_sampler_repeats_a_generation_block_as_trl_asks_under_gradient_accumulation():
    sampler = MixedBatchSampler(n_skill=4, n_anchor=4, skill_per_batch=1, anchors_per_batch=1,
                                micro_batches_per_step=2, steps=2, repeat=2, seed=0)
    order = list(sampler)
    assert len(order) == 16
    assert order[0:4] == order[4:8] and order[8:12] == order[12:16]


def test_sft_replay_targets_are_the_starting_models_own_greedy_answers(tiny_model_dir, rows):
    from workers.engine.generation import Generator

    # given the anchors an SFT run with anchors will draw
    config = TrainConfig(method="sft", batch_size=2, max_steps=2, anchor_ratio=1.0, anchor_max_new_tokens=6, seed=1)
    rehearsed = TrainRow(prompt="What is the colour code?", demonstration="The colour code is RED-1.")
    replayed = replay_targets(tiny_model_dir, [*ANCHORS, rehearsed], config, total_steps=2, n_skill=len(rows))
    # then each drawn anchor's target is the base model's greedy answer, and a rehearsed row keeps its own
    plain = [r for r in replayed if r.prompt[0]["content"].startswith("Tell me")]
    expected = Generator(tiny_model_dir).generate([r.prompt for r in plain], max_new_tokens=6)
    assert [r.demonstration for r in plain] == [e for e in expected if e.strip()]
    assert 0 < len(replayed) <= 4  # 2 steps x 2 anchors, only the drawn ones
    assert all(not r.is_anchor for r in replayed)


def test_an_anchored_sft_run_trains_on_skill_rows_and_replayed_anchors(tiny_model_dir, tmp_path, rows):
    result = train(base_dir=tiny_model_dir, rows=rows,
                   config=TrainConfig(method="sft", batch_size=2, max_steps=2, anchor_ratio=1.0,
                                      anchor_max_new_tokens=6, seed=1),
                   output_dir=tmp_path / "out", work_dir=tmp_path / "work", anchors=ANCHORS)
    assert result.metrics["anchors_per_step"] == 2 and result.metrics["anchor_rows"] > 0
    assert math.isfinite(result.metrics["final_loss"]) and result.metrics["final_loss"] > 0


def test_anchors_are_refused_among_the_skill_rows(tiny_model_dir, tmp_path, rows):
    with pytest.raises(ValueError, match="has no demonstration; anchors go in `anchors`"):
        train(base_dir=tiny_model_dir, rows=rows + [ANCHORS[0]], config=anchored_config(),
              output_dir=tmp_path / "out", work_dir=tmp_path / "work")


def test_without_given_anchors_the_shipped_pool_is_used(tiny_model_dir, tmp_path, rows):
    from workers.engine.contract.anchors import load_anchor_pool

    result = train(base_dir=tiny_model_dir, rows=rows, config=anchored_config(max_steps=1),
                   output_dir=tmp_path / "out", work_dir=tmp_path / "work")
    assert result.metrics["anchor_rows"] == len(load_anchor_pool().prompts)
