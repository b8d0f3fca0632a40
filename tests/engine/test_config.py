import pytest

from workers.engine.contract.config import ConfigError, TrainConfig


def test_defaults_are_the_papers_settings():
    config = TrainConfig()
    assert (config.method, config.distillation_mode, config.distillation_alpha) == ("sdft", "full_logits", 0.0)
    assert (config.teacher_model_kind, config.teacher_update_rate, config.num_generations) == ("ema", 0.01, 1)
    assert (config.temperature, config.num_loss_tokens_to_skip, config.lr_scheduler_type) == (1.0, 3, "cosine")
    assert config.resolved_learning_rate == 1e-4


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("method", "dpo", "must be one of 'sdft', 'sft'"),
        ("teacher_style", "system", "must be one of 'inline', 'turn'"),
        ("learning_rate", 0.5, "must be in (0, 0.01]"),
        ("num_epochs", 0, "must be a number in (0, 100]"),
        ("max_steps", 0, "must be an integer in [1, 1000000], or None"),
        ("batch_size", 2.5, "must be an integer in [1, 4096]"),
        ("lora_r", True, "must be an integer"),
        ("lora_dropout", 1.0, "must be in [0, 1)"),
        ("lora_target_modules", [], "'all-linear' or a non-empty list"),
        ("distillation_alpha", 1.5, "must be in [0, 1]"),
        ("teacher_update_rate", 0.0, "must be in (0, 1]"),
        ("temperature", 0.0, "must be in (0, 2]"),
        ("dtype", "int8", "must be one of"),
        ("checkpoint_every", -1, "must be an integer in [0, 1000000]"),
    ],
)
def test_an_out_of_range_field_is_named_with_its_value_and_range(field, value, fragment):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**{field: value})
    message = str(error.value)
    assert f"TrainConfig.{field}={value!r}" in message and fragment in message


def test_sampled_token_distillation_requires_reverse_kl():
    with pytest.raises(ConfigError, match="distillation_alpha=0.0 is invalid: must be 1.0 when"):
        TrainConfig(distillation_mode="sampled_token")


def test_num_generations_must_divide_the_step_batch():
    with pytest.raises(ConfigError, match="num_generations=3"):
        TrainConfig(batch_size=4, num_generations=3)


def test_round_trip_through_a_dict():
    config = TrainConfig(method="sft", learning_rate=2e-4, lora_target_modules=["q_proj", "v_proj"], max_steps=7)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_from_dict_rejects_unknown_keys_by_name():
    with pytest.raises(ConfigError, match=r"no field\(s\) lr, steps; known fields: .*learning_rate"):
        TrainConfig.from_dict({"lr": 1e-4, "steps": 3})


def test_total_steps_drops_partial_batches_and_honours_max_steps():
    assert TrainConfig(batch_size=4, num_epochs=2).total_steps(10) == 4  # 10 // 4 = 2 per epoch
    assert TrainConfig(batch_size=4, gradient_accumulation_steps=2).total_steps(17) == 2
    assert TrainConfig(batch_size=4, max_steps=9).total_steps(10) == 9
    assert TrainConfig().resolved_warmup_steps(200) == 10 and TrainConfig().resolved_warmup_steps(30) == 3
