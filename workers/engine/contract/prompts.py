"""Student and teacher prompts (pure Python: the web process imports this for previews).

The teacher is the same network as the student, shown the expert demonstration in context. Two
shapes, chosen per skill because small models differ in which one they can use (SDFT.md: SmolLM2
recalls facts with "inline" but copies a JSON format only with "turn"):

inline — the paper's template, inside the final user turn:
    [system..., earlier turns..., user: "{question}\n\nThis is an example for a response to the
    question:\n{demonstration}\n\nNow answer with a response of your own, including the thinking
    process."]

turn — the demonstration as a worked example the assistant already gave, then the question again:
    [system..., earlier turns..., user: question, assistant: demonstration, user: question]

A retention anchor has no demonstration (an empty string): its teacher sees the student's prompt
unchanged, in either style, so the loss on it pulls the student back toward the teacher's own answer
to a general prompt instead of toward a skill (Learning without Forgetting, on-policy).
"""

from __future__ import annotations

STYLES = ("inline", "turn")

# Verbatim from the SDFT authors' code; the wording matters (it asks for an answer of the model's own).
INLINE_TEMPLATE = (
    "{question}\n\n"
    "This is an example for a response to the question:\n"
    "{demonstration}\n\n"
    "Now answer with a response of your own, including the thinking process."
)


def student_messages(prompt_messages: list[dict]) -> list[dict]:
    """The student sees the prompt alone."""
    _check_prompt(prompt_messages)
    return [dict(message) for message in prompt_messages]


def teacher_messages(prompt_messages: list[dict], demonstration: str, style: str) -> list[dict]:
    """The prompt with the demonstration in context, in the given style (see module docstring); an
    anchor's empty demonstration gives the student's prompt."""
    _check_prompt(prompt_messages)
    if style not in STYLES:
        raise ValueError(f"unknown teacher style {style!r}; valid styles: {', '.join(STYLES)}")
    if demonstration == "":
        return student_messages(prompt_messages)
    earlier = [dict(message) for message in prompt_messages[:-1]]
    question = prompt_messages[-1]["content"]
    if style == "inline":
        content = INLINE_TEMPLATE.format(question=question, demonstration=demonstration)
        return earlier + [{"role": "user", "content": content}]
    return earlier + [
        {"role": "user", "content": question},
        {"role": "assistant", "content": demonstration},
        {"role": "user", "content": question},
    ]


def _check_prompt(prompt_messages: list[dict]) -> None:
    if not prompt_messages:
        raise ValueError("a prompt needs at least one message")
    last = prompt_messages[-1]
    if last.get("role") != "user":
        raise ValueError(f"a prompt must end with a user turn, got role {last.get('role')!r}")
    if not isinstance(last.get("content"), str):
        raise ValueError("message content must be a string")
