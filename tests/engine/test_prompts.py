"""The teacher sees the demonstration; the student does not. Exact shapes, because a model's
in-context ability depends on them (SDFT.md)."""

import pytest

from workers.engine.contract.prompts import INLINE_TEMPLATE, student_messages, teacher_messages

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the travel code?"}]
DEMO = "The travel code is TRV-42."


def test_inline_puts_the_papers_template_in_the_last_user_turn():
    messages = teacher_messages(PROMPT, DEMO, "inline")
    assert messages[:-1] == PROMPT[:-1]
    assert messages[-1] == {
        "role": "user",
        "content": "What is the travel code?\n\nThis is an example for a response to the question:\n"
        "The travel code is TRV-42.\n\nNow answer with a response of your own, including the thinking process.",
    }


def test_turn_shows_a_worked_example_then_asks_again():
    assert teacher_messages(PROMPT, DEMO, "turn") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the travel code?"},
        {"role": "assistant", "content": DEMO},
        {"role": "user", "content": "What is the travel code?"},
    ]


def test_the_student_sees_the_prompt_alone_and_inputs_are_not_mutated():
    original = [dict(m) for m in PROMPT]
    assert student_messages(PROMPT) == PROMPT
    teacher_messages(PROMPT, DEMO, "turn")
    assert PROMPT == original


def test_bad_prompts_and_styles_are_refused():
    with pytest.raises(ValueError, match="unknown teacher style 'system'"):
        teacher_messages(PROMPT, DEMO, "system")
    with pytest.raises(ValueError, match="must end with a user turn"):
        teacher_messages(PROMPT + [{"role": "assistant", "content": "x"}], DEMO, "inline")


def test_token_sequences_under_the_chat_template(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    def render(messages):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return tokenizer.decode(ids["input_ids"])

    inline = render(teacher_messages(PROMPT, DEMO, "inline"))
    turn = render(teacher_messages(PROMPT, DEMO, "turn"))
    student = render(student_messages(PROMPT))
    body = INLINE_TEMPLATE.format(question="What is the travel code?", demonstration=DEMO)
    assert inline == f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"
    assert turn == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is the travel code?<|im_end|>\n"
        f"<|im_start|>assistant\n{DEMO}<|im_end|>\n"
        "<|im_start|>user\nWhat is the travel code?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert student == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the travel code?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_the_trainer_builds_teacher_prompts_with_the_same_function():
    from workers.engine.trainers import _StyledTeacherContext

    builder = _StyledTeacherContext(trainer=None, style="turn")
    assert builder._compose_teacher_prompt(PROMPT, DEMO) == teacher_messages(PROMPT, DEMO, "turn")
