"""Find the answer inside a model's prose: a JSON object, a chosen letter, a number, a tool call.

Small instruct models wrap answers in fences, lead-ins ("The answer is ...") and explanations;
scoring.py compares what these functions extract. Pure Python, like scoring.
"""

from __future__ import annotations

import json
import re
import string

QUOTES_AND_PUNCTUATION = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026\u3002"


def find_json_object(text: str) -> dict | None:
    """The first balanced {...} in `text` that parses as a JSON object (prose and ``` fences around it)."""
    start = text.find("{")
    while start >= 0:
        end = _balanced_end(text, start)
        if end is not None:
            try:
                value = json.loads(text[start : end + 1])
            except ValueError:
                value = None
            if isinstance(value, dict):
                return value
        start = text.find("{", start + 1)
    return None


def _balanced_end(text: str, start: int) -> int | None:
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    return None


def extract_choice(text: str, letters: str = "ABCDE") -> str | None:
    """The letter chosen in `text`: '(b)', 'B)', 'Answer: c', 'The answer is D.', or a bare 'C'."""
    letters = letters.upper()
    stripped = text.strip().strip(QUOTES_AND_PUNCTUATION + " ")
    if len(stripped) == 1 and stripped.upper() in letters:
        return stripped.upper()
    cls = f"[{letters}{letters.lower()}]"
    for pattern in (
        rf"answer\s*(?:(?:is|:|-|=)\s*)*(?:option\s*)?[(\[]?({cls})(?![A-Za-z'])",
        rf"(?:option|choice)\s*[(\[]?({cls})(?![A-Za-z'])",
        rf"\(({cls})\)",
        rf"(?m)^\s*({cls})\s*[).:]",
    ):
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            return match.group(1).upper()
    # a lone capital letter; 'A' only when it is not the article ("A dog ...")
    others = letters.replace("A", "")
    alternatives = ([f"[{others}]"] if others else []) + (["A(?! [a-z])"] if "A" in letters else [])
    match = re.search(rf"(?<![A-Za-z'])({'|'.join(alternatives)})(?![A-Za-z'])", text)
    return match.group(1) if match else None


_NUMBER = re.compile(
    r"(?<![\w.])"  # not the tail of a word, a version or a decimal
    r"([-\u2212]?)"
    r"(\d{1,3}(?:,\d{3})+|\d+)?(\.\d+)?"
    r"(?:[eE]([-+]?\d+))?"
)
_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}


def extract_numbers(text: str) -> list[float]:
    """Numbers in reading order: '-3', '1,234.5', '$12', '40 km', '2.5e3'; number words if no digits."""
    numbers = []
    for match in _NUMBER.finditer(text):
        sign, whole, fraction, exponent = match.groups()
        if not whole and not fraction:
            continue
        if sign and match.start() > 0 and text[match.start() - 1].isalnum():
            sign = ""  # "2-3" is a range, not 2 and -3
        literal = (whole or "0").replace(",", "") + (fraction or "") + (f"e{exponent}" if exponent else "")
        value = float(literal)
        numbers.append(-value if sign else value)
    if not numbers:
        numbers = [float(_NUMBER_WORDS[w]) for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS]
    return numbers


_NAME_KEYS = ("tool", "name", "action", "function", "tool_name")
_ARG_KEYS = ("arguments", "args", "parameters", "action_input", "input", "tool_input")


def parse_tool_call(text: str) -> tuple[str, dict] | None:
    """(name, arguments) from `search({"q": "x"})`, `{"tool": "search", "arguments": {...}}`
    (also OpenAI's {"function": {"name", "arguments": "<json>"}}) or `Action: search / Action Input: {...}`."""
    action = re.search(r"Action\s*:\s*`?([A-Za-z_][\w.\-]*)`?\s*\n\s*Action\s*Input\s*:\s*", text, re.IGNORECASE)
    if action:
        rest = text[action.end() :]
        args = find_json_object(rest) if rest.lstrip().startswith(("{", "`")) else None
        return action.group(1), args if args is not None else {}
    for call in re.finditer(r"([A-Za-z_][\w.]*)\s*\(\s*", text):
        after = call.end()
        if text.startswith(")", after):
            return call.group(1), {}
        if text.startswith("{", after):
            end = _balanced_end(text, after)
            if end is not None and text[end + 1 :].lstrip().startswith(")"):
                try:
                    args = json.loads(text[after : end + 1])
                except ValueError:
                    continue
                if isinstance(args, dict):
                    return call.group(1), args
    obj = find_json_object(text)
    if obj is None:
        return None
    if isinstance(obj.get("tool_calls"), list) and obj["tool_calls"] and isinstance(obj["tool_calls"][0], dict):
        obj = obj["tool_calls"][0]
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is None:
        return None
    args = next((obj[k] for k in _ARG_KEYS if k in obj), {})
    if isinstance(args, str):  # OpenAI encodes arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            return name, {"": args}
    return name, args if isinstance(args, dict) else {"": args}
