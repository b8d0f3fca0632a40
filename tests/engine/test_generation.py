import math

import pytest

from workers.engine.generation import Generator

SHORT = [{"role": "user", "content": "Code?"}]
LONG = [{"role": "user", "content": "What is the travel policy code for a trip to Paris next spring? " * 3}]


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    return Generator(tiny_model_dir, device="cpu")


def test_left_padding_does_not_change_a_greedy_answer(generator):
    alone = generator.generate([SHORT], max_new_tokens=12)
    batched = generator.generate([LONG, SHORT], max_new_tokens=12, batch_size=2)
    assert alone[0] and batched[1] == alone[0]
    assert batched[0] == generator.generate([LONG], max_new_tokens=12)[0]


def test_answers_come_back_in_prompt_order_with_only_new_text(generator):
    answers = generator.generate([SHORT, LONG, SHORT], max_new_tokens=8, batch_size=2)
    assert answers[0] == answers[2]
    assert "<|im_start|>" not in answers[1] and "Code?" not in answers[0]


def test_generation_stops_at_eos(generator):
    # Forcing EOS as the most likely token everywhere makes every answer empty.
    eos = generator.tokenizer.eos_token_id
    head = generator.model.get_output_embeddings()
    norm = generator.model.model.norm.weight
    original, original_norm = head.weight.data.clone(), norm.data.clone()
    try:
        head.weight.data.zero_()
        head.weight.data[eos] = 1.0
        generator.model.model.norm.weight.data.fill_(1.0)
        assert generator.generate([SHORT], max_new_tokens=8) == [""]
    finally:
        head.weight.data.copy_(original)
        norm.data.copy_(original_norm)


def test_mean_logprob_is_the_same_alone_and_in_a_batch(generator):
    alone = generator.mean_logprob([SHORT], ["The code is TRV-42."])
    batched = generator.mean_logprob([LONG, SHORT], ["Paris.", "The code is TRV-42."], batch_size=2)
    assert alone[0] < 0 and math.isclose(batched[1], alone[0], rel_tol=1e-4, abs_tol=1e-4)


def test_one_pass_with_a_budget_per_prompt_answers_as_each_prompt_alone(generator):
    # The gate scores every suite of a version in one pass: probes and skills have different budgets.
    prompts = [SHORT, LONG, SHORT, LONG]
    budgets = [3, 12, 12, 5]
    together = generator.generate(prompts, max_new_tokens=budgets, batch_size=4)
    alone = [generator.generate([prompt], max_new_tokens=budget)[0] for prompt, budget in zip(prompts, budgets, strict=True)]
    assert together == alone
    assert len(together[0]) < len(together[2])  # the short budget really cut the answer
    with pytest.raises(ValueError, match="2 max_new_tokens for 4 prompts"):
        generator.generate(prompts, max_new_tokens=[3, 4])


def test_greedy_answers_are_deterministic(generator):
    prompts = [SHORT, LONG]
    assert generator.generate(prompts, max_new_tokens=10) == generator.generate(prompts, max_new_tokens=10)
