"""Score one model output against one reference (pure Python: the web process imports this).

Every skill's eval cases and the retention probes are scored here, so a gate's verdict is only as
fair as these extractors. They are written for small instruct models, which wrap answers in prose,
fences and "The answer is ..." lead-ins: each kind first extracts the answer (answer_extraction.py),
then compares it.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from workers.engine.contract.answer_extraction import (
    QUOTES_AND_PUNCTUATION,
    extract_choice,
    extract_numbers,
    find_json_object,
    parse_tool_call,
)


@dataclass(frozen=True)
class CaseScore:
    passed: bool
    score: float  # 0..1; partial credit where the kind allows it (json_fields, tool_call, f1, rouge)
    extracted: str | None  # what was taken from the output and compared; None when nothing was found
    detail: str  # why it failed (or what matched), shown next to the case in the gate report


SCORER_KINDS: tuple[tuple[str, str], ...] = (
    ("exact", "The whole answer equals the reference, ignoring case, spacing and surrounding punctuation."),
    ("contains", "The reference appears in the answer as whole words, ignoring case and spacing."),
    ("regex", "A regular expression (options.pattern, else the reference) matches the answer."),
    ("json_fields", "The first JSON object in the answer has the reference's field values."),
    ("multiple_choice", "The chosen letter (A-E), e.g. '(b)' or 'Answer: C', equals the reference."),
    ("numeric", "The answer's number equals the reference within an absolute/relative tolerance."),
    ("tool_call", "The answer calls the reference's tool with the same JSON arguments."),
    ("token_f1", "SQuAD-style token F1 with the reference is at least options.threshold (0.5)."),
    ("rouge_l", "ROUGE-L (longest common subsequence) F-measure is at least options.threshold (0.5)."),
)
_KIND_NAMES = tuple(name for name, _ in SCORER_KINDS)

# option name -> accepted types, per kind; anything else is a typo the author should hear about
_OPTION_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "exact": {"case_sensitive": (bool,)},
    "contains": {"case_sensitive": (bool,), "whole_word": (bool,)},
    "regex": {"pattern": (str,), "ignore_case": (bool,)},
    "json_fields": {"fields": (list,)},
    "multiple_choice": {"letters": (str,)},
    "numeric": {"abs_tol": (int, float), "rel_tol": (int, float), "position": (str,)},
    "tool_call": {"allow_extra_args": (bool,)},
    "token_f1": {"threshold": (int, float)},
    "rouge_l": {"threshold": (int, float)},
}

# Options are typed in by people and stored as JSON: bounded so that a pasted novel or a pattern of a
# thousand nested groups is a refusal, not a slow page or a RecursionError.
MAX_OPTION_TEXT = 1000
MAX_FIELDS = 100
# a lone surrogate cannot be encoded (saved, hashed, shown); PostgreSQL stores no NUL character
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_REPR = reprlib.Repr()  # an echoed value stays short, escaped and flat
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 60, 60, 3
_shown = _REPR.repr


def validate_options(kind: str, options: dict | None) -> None:
    """Raise ValueError naming the problem when `options` cannot be used with `kind`. Any value is refused
    with a ValueError, never another exception: they come from forms, files and the admin."""
    if not isinstance(kind, str) or kind not in _OPTION_TYPES:
        raise ValueError(f"unknown scorer kind {_shown(kind)}; valid kinds: {', '.join(_KIND_NAMES)}")
    options = options or {}
    if not isinstance(options, dict):
        raise ValueError(f"scorer options must be a JSON object, got {type(options).__name__}")
    allowed = _OPTION_TYPES[kind]
    for name, value in options.items():
        if name not in allowed:
            valid = ", ".join(allowed) or "none"
            raise ValueError(f"unknown option {_shown(name)} for scorer {kind!r}; valid options: {valid}")
        # bool is an int subclass: a True tolerance is a mistake, not 1.0
        if not isinstance(value, allowed[name]) or (isinstance(value, bool) and bool not in allowed[name]):
            want = " or ".join(t.__name__ for t in allowed[name])
            raise ValueError(f"option {name!r} of scorer {kind!r} must be {want}, got {_shown(value)}")
        texts = value if name == "fields" else [value]
        for text in texts:
            if isinstance(text, str):
                _check_text(name, text)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                finite = math.isfinite(value)
            except OverflowError:  # an int past a float's range
                finite = False
            if not finite:
                raise ValueError(f"option {name!r} must be a finite number, got {_shown(value)}")
    if kind == "regex" and "pattern" in options:
        try:
            re.compile(options["pattern"])
        except re.error as exc:
            raise ValueError(f"option 'pattern' is not a valid regular expression: {exc}") from exc
        except (RecursionError, OverflowError):  # groups nested a thousand deep; a repeat count past 2**32
            raise ValueError("option 'pattern' is too complex a regular expression (nesting or repeat "
                             "counts); simplify it") from None
    if kind == "json_fields":
        fields = options.get("fields", [])
        if not all(isinstance(f, str) and f for f in fields):
            raise ValueError("option 'fields' must be a list of field names (non-empty strings)")
        if len(fields) > MAX_FIELDS:
            raise ValueError(f"option 'fields' lists {len(fields)} fields; at most {MAX_FIELDS} are allowed")
    if kind == "multiple_choice" and "letters" in options:
        letters = options["letters"]
        if not letters or not letters.isalpha() or len(set(letters.upper())) != len(letters):
            raise ValueError(f"option 'letters' must be distinct letters such as 'ABCD', got {_shown(letters)}")
    if kind == "numeric":
        for name in ("abs_tol", "rel_tol"):
            if options.get(name, 0) < 0:
                raise ValueError(f"option {name!r} must be a finite number >= 0, got {options[name]!r}")
        if options.get("position", "last") not in ("first", "last"):
            raise ValueError(f"option 'position' must be 'first' or 'last', got {_shown(options['position'])}")
    if kind in ("token_f1", "rouge_l") and not 0 <= options.get("threshold", 0.5) <= 1:
        raise ValueError(f"option 'threshold' must be between 0 and 1, got {options['threshold']!r}")


def _check_text(name: str, text: str) -> None:
    if len(text) > MAX_OPTION_TEXT:
        raise ValueError(f"option {name!r} is {len(text):,} characters long; at most {MAX_OPTION_TEXT:,} are allowed")
    found = _UNSTORABLE.search(text)
    if found is not None:
        what = "a NUL character" if found.group() == "\x00" else "half of a surrogate pair (not a character)"
        raise ValueError(f"option {name!r} contains {what} at position {found.start()}; remove it")


def score(kind: str, output: str, reference: str, options: dict | None = None) -> CaseScore:
    validate_options(kind, options)
    options = options or {}
    return _SCORERS[kind](output, reference, options)


def _normalise(text: str, case_sensitive: bool = False) -> str:
    text = " ".join(text.split()).strip(QUOTES_AND_PUNCTUATION + " ")
    return text if case_sensitive else text.casefold()


def _short(text: str | None, limit: int = 80) -> str:
    if text is None:
        return "nothing"
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _verdict(passed: bool, value: float, extracted: str | None, reference: str) -> CaseScore:
    detail = "matched" if passed else f"expected {_short(reference)}, got {_short(extracted)}"
    return CaseScore(passed, value, extracted, detail)


def _score_exact(output: str, reference: str, options: dict) -> CaseScore:
    case_sensitive = options.get("case_sensitive", False)
    got = _normalise(output, case_sensitive)
    passed = got == _normalise(reference, case_sensitive)
    return _verdict(passed, float(passed), _normalise(output, True), reference)


def _score_contains(output: str, reference: str, options: dict) -> CaseScore:
    case_sensitive = options.get("case_sensitive", False)
    needle = _normalise(reference, case_sensitive)
    haystack = " ".join(output.split()) if case_sensitive else " ".join(output.split()).casefold()
    if not needle:
        raise ValueError("a 'contains' reference must have some text")
    # whole words by default: reference "4" must not pass on "14", nor "cat" on "category"
    boundary = (r"(?<!\w)", r"(?!\w)") if options.get("whole_word", True) else ("", "")
    found = re.search(boundary[0] + re.escape(needle) + boundary[1], haystack)
    if found:
        return CaseScore(True, 1.0, found.group(0), f"found {_short(found.group(0))}")
    return CaseScore(False, 0.0, None, f"expected the answer to contain {_short(reference)}, got {_short(output)}")


def _score_regex(output: str, reference: str, options: dict) -> CaseScore:
    flags = re.IGNORECASE if options.get("ignore_case", False) else 0
    pattern = options.get("pattern")
    if pattern is None:  # the reference is the pattern: a match is a pass
        try:
            match = re.search(reference, output, flags)
        except re.error as exc:
            raise ValueError(f"reference {reference!r} is not a valid regular expression: {exc}") from exc
        if match is None:
            return CaseScore(False, 0.0, None, f"no match for /{reference}/ in {_short(output)}")
        return CaseScore(True, 1.0, match.group(0), f"matched {_short(match.group(0))}")
    # with options.pattern, the pattern extracts the answer (group 1 if any) and the reference is its value
    match = re.search(pattern, output, flags)
    if match is None:
        return CaseScore(False, 0.0, None, f"no match for /{pattern}/ in {_short(output)}")
    extracted = match.group(1) if match.re.groups else match.group(0)
    extracted = extracted or ""
    passed = not reference.strip() or _normalise(extracted) == _normalise(reference)
    return _verdict(passed, float(passed), extracted, reference)


def _same_value(got: Any, want: Any) -> bool:
    # a model writing "Paris " or 3.0 for 3 has given the same field value
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(want, str) and isinstance(got, str):
        return _normalise(got) == _normalise(want)
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(_same_value(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(_same_value(g, w) for g, w in zip(got, want, strict=True))
    return got == want


def _score_json_fields(output: str, reference: str, options: dict) -> CaseScore:
    want = find_json_object(reference)
    if want is None:
        raise ValueError(f"a 'json_fields' reference must be a JSON object, got {_short(reference)}")
    fields = options.get("fields") or list(want)
    missing_in_reference = [f for f in fields if f not in want]
    if missing_in_reference:
        raise ValueError(f"fields {missing_in_reference} are not in the reference JSON {_short(reference)}")
    got = find_json_object(output)
    if got is None:
        return CaseScore(False, 0.0, None, f"no JSON object found in {_short(output)}")
    wrong = [f for f in fields if f not in got or not _same_value(got[f], want[f])]
    extracted = json.dumps(got, ensure_ascii=False)
    value = (len(fields) - len(wrong)) / len(fields) if fields else 1.0
    if not wrong:
        return CaseScore(True, value, extracted, f"all {len(fields)} fields match")
    shown = "; ".join(
        f"{f}: expected {json.dumps(want[f], ensure_ascii=False)}, got "
        + (json.dumps(got[f], ensure_ascii=False) if f in got else "nothing")
        for f in wrong[:5]
    )
    return CaseScore(False, value, extracted, f"{len(wrong)} of {len(fields)} fields differ ({shown})")


def _score_multiple_choice(output: str, reference: str, options: dict) -> CaseScore:
    letters = options.get("letters", "ABCDE")
    want = extract_choice(reference, letters)
    if want is None:
        raise ValueError(f"a 'multiple_choice' reference must name one of {letters}, got {_short(reference)}")
    got = extract_choice(output, letters)
    passed = got == want
    detail = "matched" if passed else f"expected {want!r}, got " + (repr(got) if got else f"no choice in {_short(output)}")
    return CaseScore(passed, float(passed), got, detail)


def _format_number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _score_numeric(output: str, reference: str, options: dict) -> CaseScore:
    wanted = extract_numbers(reference)
    if not wanted:
        raise ValueError(f"a 'numeric' reference must contain a number, got {_short(reference)}")
    want = wanted[0]
    found = extract_numbers(output)
    if not found:
        return CaseScore(False, 0.0, None, f"expected {_format_number(want)}, found no number in {_short(output)}")
    got = found[-1] if options.get("position", "last") == "last" else found[0]
    abs_tol, rel_tol = options.get("abs_tol", 1e-9), options.get("rel_tol", 0.0)
    passed = math.isclose(got, want, abs_tol=abs_tol, rel_tol=rel_tol)
    extracted = _format_number(got)
    detail = "matched" if passed else f"expected {_format_number(want)}, got {extracted}"
    return CaseScore(passed, float(passed), extracted, detail)


def _score_tool_call(output: str, reference: str, options: dict) -> CaseScore:
    want = parse_tool_call(reference)
    if want is None:
        raise ValueError(f"a 'tool_call' reference must be a tool call such as name({{...}}), got {_short(reference)}")
    got = parse_tool_call(output)
    if got is None:
        return CaseScore(False, 0.0, None, f"expected a call to {want[0]!r}, found no tool call in {_short(output)}")
    extracted = f"{got[0]}({json.dumps(got[1], ensure_ascii=False, sort_keys=True)})"
    if got[0].casefold() != want[0].casefold():
        return CaseScore(False, 0.0, extracted, f"expected tool {want[0]!r}, got {got[0]!r}")
    keys = set(want[1]) if options.get("allow_extra_args", False) else set(want[1]) | set(got[1])
    wrong = sorted(k for k in keys if k not in got[1] or k not in want[1] or not _same_value(got[1][k], want[1][k]))
    # the right tool earns half: a gate should see "called search with the wrong query" as closer
    value = 0.5 + 0.5 * ((len(keys) - len(wrong)) / len(keys) if keys else 1.0)
    if not wrong:
        return CaseScore(True, 1.0, extracted, "matched")
    shown = "; ".join(
        f"{k}: expected {json.dumps(want[1].get(k), ensure_ascii=False) if k in want[1] else 'absent'}, "
        f"got {json.dumps(got[1].get(k), ensure_ascii=False) if k in got[1] else 'absent'}"
        for k in wrong[:5]
    )
    return CaseScore(False, value, extracted, f"tool {got[0]!r} called with different arguments ({shown})")


_PUNCT_TO_SPACE = str.maketrans({c: " " for c in QUOTES_AND_PUNCTUATION})


def _tokens(text: str, drop_articles: bool) -> list[str]:
    words = text.casefold().translate(_PUNCT_TO_SPACE).split()
    return [w for w in words if w not in ("a", "an", "the")] if drop_articles else words


def _f_measure(name: str, overlap, got: list[str], want: list[str], output: str, options: dict) -> CaseScore:
    """F-measure of `overlap(got, want)` (how many tokens the two share) against options.threshold."""
    if not got or not want:
        value = float(got == want)
    else:
        shared = overlap(got, want)
        precision, recall = shared / len(got), shared / len(want)
        value = 0.0 if shared == 0 else 2 * precision * recall / (precision + recall)
    threshold = options.get("threshold", 0.5)
    passed = value >= threshold
    detail = f"{name} {value:.2f} " + (">=" if passed else "<") + f" threshold {threshold:.2f}"
    return CaseScore(passed, value, output.strip(), detail)


def _score_token_f1(output: str, reference: str, options: dict) -> CaseScore:
    # SQuAD's normalisation: lower case, no punctuation, no articles
    return _f_measure("token F1", lambda got, want: sum((Counter(got) & Counter(want)).values()),
                      _tokens(output, True), _tokens(reference, True), output, options)


def _lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _score_rouge_l(output: str, reference: str, options: dict) -> CaseScore:
    return _f_measure("ROUGE-L", _lcs_length, _tokens(output, False), _tokens(reference, False), output, options)


_SCORERS = {
    "exact": _score_exact, "contains": _score_contains, "regex": _score_regex, "json_fields": _score_json_fields,
    "multiple_choice": _score_multiple_choice, "numeric": _score_numeric, "tool_call": _score_tool_call,
    "token_f1": _score_token_f1, "rouge_l": _score_rouge_l,
}
