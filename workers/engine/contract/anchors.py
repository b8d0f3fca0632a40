"""The shipped retention anchor pool, and the guard that keeps it apart from the gate's probes.

Anchor rows are general prompts with no demonstration, mixed into every SDFT step: the teacher sees
the plain prompt, so the loss is KL(EMA teacher || student) on the student's own samples and pulls a
drifting student back toward where it started (Learning without Forgetting, Li & Hoiem 2016, done
on-policy). Measured on SmolLM2-135M: 29 of 32 probes kept instead of 23 (see workers/engine/config.py).

The pool must never repeat the retention probes (workers/engine/contract/probes.jsonl). The probes measure
forgetting; a model trained on them would keep exactly those answers and the gate would report
retention that the model does not have. The same holds for any probe set kept outside the repo, so
the guard compares text, not ids, and also catches near copies (a number or a word changed, a probe's
phrase embedded in a longer prompt).

Pure Python: the web process imports this module, so it must not import torch, transformers or Django.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workers.engine.contract.jsonl import object_lines

ANCHORS_PATH = Path(__file__).with_name("anchors.jsonl")
ANCHOR_CATEGORIES = (
    "questions", "instructions", "arithmetic", "definitions", "rewriting", "lists", "chitchat", "short-formats",
)
_FIELDS = ("id", "category", "prompt")
# a ValueError lists this many overlaps; more would bury the first fix under the rest
_OVERLAPS_SHOWN = 10


@dataclass(frozen=True)
class AnchorPool:
    prompts: tuple[str, ...]
    ids: tuple[str, ...]
    sha256: str  # hex digest of the file's bytes: the job records which pool it trained with
    path: Path
    categories: tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.ids) != len(self.prompts) or (self.categories and len(self.categories) != len(self.prompts)):
            raise ValueError(
                f"AnchorPool: {len(self.prompts)} prompts, {len(self.ids)} ids and {len(self.categories)} "
                "categories; give one id (and one category, if any) per prompt"
            )

    def __len__(self) -> int:
        return len(self.prompts)

    def rows_as_messages(self) -> list[list[dict]]:
        """Each prompt as the engine's chat messages (see docs/engine-interface.md)."""
        return [[{"role": "user", "content": prompt}] for prompt in self.prompts]


def load_anchor_pool(path: Path = ANCHORS_PATH) -> AnchorPool:
    """Read and check the anchor file; a broken line raises ValueError naming the file, line and fix."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from exc
    ids: list[str] = []
    prompts: list[str] = []
    categories: list[str] = []
    id_lines: dict[str, int] = {}
    prompt_lines: dict[str, int] = {}
    example = '{"id": "questions-001", "category": "questions", "prompt": "..."}'
    for line_number, where, row in object_lines(text, path=path, fields=_FIELDS, example=example):
        for name in _FIELDS:
            if not isinstance(row[name], str) or not row[name].strip():
                raise ValueError(f"{where}: {name!r} must be a non-empty string; fill it in or delete the line")
        if row["category"] not in ANCHOR_CATEGORIES:
            raise ValueError(f"{where}: category {row['category']!r} is not one of {ANCHOR_CATEGORIES}; use one of them")
        if row["id"] in id_lines:
            raise ValueError(
                f"{where}: id {row['id']!r} repeats line {id_lines[row['id']]}; give this anchor a new id"
            )
        key = normalise(row["prompt"])
        if key in prompt_lines:
            # a repeated prompt would silently weigh that one prompt double in every step it is drawn
            raise ValueError(
                f"{where}: prompt {row['prompt']!r} repeats line {prompt_lines[key]} "
                "(ignoring case, punctuation and spacing); delete or rewrite one of them"
            )
        id_lines[row["id"]] = line_number
        prompt_lines[key] = line_number
        ids.append(row["id"])
        prompts.append(row["prompt"])
        categories.append(row["category"])
    if not prompts:
        raise ValueError(f"{path}: no anchors; add at least one line")
    return AnchorPool(
        prompts=tuple(prompts), ids=tuple(ids), sha256=hashlib.sha256(data).hexdigest(), path=path,
        categories=tuple(categories),
    )


# Letters and digits make words; an arithmetic operator is a word of its own, so "2 + 3" and "2 - 3"
# stay different while "2+3" and "2 + 3" agree; "3x4" splits into "3 x 4" on its own. Apostrophes join
# ("don't" -> "dont"). A hyphen is a minus only before a number; elsewhere ("well-known", "3 -- then")
# it is punctuation.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+|[-+×*/=÷%]")
_DASH = re.compile(r"-(?!\s*\d)")
_APOSTROPHES = str.maketrans("", "", "'’‘`´")
# one spelling per operator, so "3 × 4", "3 * 4" and "3 x 4" normalise alike, and "25%" is "25 percent"
# (the guard errs strict)
_OPERATORS = {"×": "x", "*": "x", "÷": "/", "%": "percent"}


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES).replace("−", "-")
    text = _DASH.sub(" ", text)
    return [_OPERATORS.get(token, token).replace(",", "") for token in _TOKEN.findall(text)]


def normalise(text: str) -> str:
    """Lowercase NFKC words, punctuation dropped, arithmetic operators kept as words, one space between."""
    return " ".join(_words(text))


@dataclass(frozen=True)
class Overlap:
    candidate: str
    protected: str
    reason: str


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


# Below this many words a trigram set is too small to measure similarity (a 4-word text has 2), so the
# Jaccard rule compares bigrams when either text is this short.
_SHORT_TEXT_WORDS = 6
# The one-word rule needs this many words left in common; otherwise "Hello." and "Thanks." would be
# "one word apart".
_ONE_WORD_MIN_SHARED = 3


def _one_word_keys(words: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """Keys that two texts share when one word is swapped ("sub") or one is dropped from the longer ("del")."""
    keys = [("sub", words[:i] + ("\0",) + words[i + 1:]) for i in range(len(words))]
    keys += [("del", words[:i] + words[i + 1:]) for i in range(len(words))]
    keys.append(("del", words))
    return keys


def find_overlaps(
    candidates: Iterable[str], protected: Iterable[str], *, ngram: int = 5, jaccard: float = 0.5,
) -> list[Overlap]:
    """Every (candidate, protected) pair that is the same prompt or a near copy, with the rule that fired.

    Rules, checked in this order (one Overlap per pair):
    - same text after `normalise`;
    - one word apart: a single word or number swapped, added or dropped (the shape of a template reused
      with a new value: "What is 2 + 3?" vs "What is 2 + 4?");
    - a shared run of `ngram` words (a probe's phrase embedded in a longer prompt);
    - word-trigram Jaccard similarity >= `jaccard` (bigrams when either text is under 6 words): a
      near copy with a few small edits.
    Protected texts are indexed by their n-grams, so a candidate is compared only with the protected
    texts it shares a word pair with; 400 candidates against 1000 probes take milliseconds.
    """
    if ngram < 2:
        raise ValueError(f"find_overlaps: ngram={ngram} must be at least 2 (single common words would match)")
    if not 0.0 < jaccard <= 1.0:
        raise ValueError(f"find_overlaps: jaccard={jaccard} must be in (0, 1]")
    protected_texts = list(protected)
    protected_words = [tuple(_words(text)) for text in protected_texts]
    exact: dict[tuple[str, ...], list[int]] = defaultdict(list)
    one_word: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(list)
    by_ngram: dict[tuple[str, ...], list[int]] = defaultdict(list)
    by_bigram: dict[tuple[str, ...], list[int]] = defaultdict(list)
    shingles: list[dict[int, set[tuple[str, ...]]]] = []
    for index, words in enumerate(protected_words):
        if not words:
            shingles.append({2: set(), 3: set()})
            continue
        exact[words].append(index)
        for key in _one_word_keys(words):
            one_word[key].append(index)
        for gram in _ngrams(list(words), ngram):
            by_ngram[gram].append(index)
        sets = {2: _ngrams(list(words), 2), 3: _ngrams(list(words), 3)}
        for gram in sets[2]:
            by_bigram[gram].append(index)
        shingles.append(sets)

    overlaps: list[Overlap] = []
    for candidate in candidates:
        words = tuple(_words(candidate))
        if not words:
            continue
        found: dict[int, str] = {}
        for index in exact.get(words, ()):
            found[index] = f"same text after normalisation: {' '.join(words)!r}"
        for key in _one_word_keys(words):
            for index in one_word.get(key, ()):
                if index in found or len(key[1]) - (key[0] == "sub") < _ONE_WORD_MIN_SHARED:
                    continue
                found[index] = f"one word apart: {_word_difference(words, protected_words[index])}"
        for start in range(len(words) - ngram + 1):
            for index in by_ngram.get(words[start:start + ngram], ()):
                if index not in found:
                    run = _longest_shared_run(words, protected_words[index])
                    found[index] = f"shares the {len(run)}-word phrase {' '.join(run)!r}"
        bigrams, trigrams = _ngrams(list(words), 2), _ngrams(list(words), 3)
        near = {index for gram in bigrams for index in by_bigram.get(gram, ()) if index not in found}
        for index in near:
            size = 2 if min(len(words), len(protected_words[index])) < _SHORT_TEXT_WORDS else 3
            mine, theirs = (bigrams, trigrams)[size - 2], shingles[index][size]
            shared = mine & theirs
            score = len(shared) / len(mine | theirs) if shared else 0.0
            if score >= jaccard:
                sample = ", ".join(repr(" ".join(gram)) for gram in sorted(shared)[:3])
                found[index] = f"word-{('bigram', 'trigram')[size - 2]} Jaccard {score:.2f} >= {jaccard:g} (shares {sample})"
        overlaps += [Overlap(candidate, protected_texts[index], found[index]) for index in sorted(found)]
    return overlaps


def _longest_shared_run(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """The longest run of words both texts contain (words, not characters: prompts are short)."""
    best_end, best_length = 0, 0
    previous = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        current = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                current[j] = previous[j - 1] + 1
                if current[j] > best_length:
                    best_end, best_length = i, current[j]
        previous = current
    return a[best_end - best_length:best_end]


def _word_difference(a: tuple[str, ...], b: tuple[str, ...]) -> str:
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    mine, theirs = " ".join(a[start:len(a) - end]), " ".join(b[start:len(b) - end])
    return f"{mine or '(nothing)'!r} instead of {theirs or '(nothing)'!r} in {' '.join(b)!r}"


def check_no_probe_overlap(pool: AnchorPool, probe_prompts: Iterable[str]) -> None:
    """Refuse a pool that repeats or nearly repeats any probe prompt.

    The probes measure forgetting; an anchor that repeats one trains the model on the measurement,
    and the gate would then report retention the model does not have.
    """
    overlaps = find_overlaps(pool.prompts, probe_prompts)
    if not overlaps:
        return
    id_of = dict(zip(pool.prompts, pool.ids, strict=True))
    lines = [
        f"  - remove or rewrite anchor {id_of[o.candidate]} in {pool.path}: it repeats probe {o.protected!r} "
        f"({o.reason})"
        for o in overlaps[:_OVERLAPS_SHOWN]
    ]
    if len(overlaps) > _OVERLAPS_SHOWN:
        lines.append(f"  ... and {len(overlaps) - _OVERLAPS_SHOWN} more")
    raise ValueError(
        f"{pool.path}: {len(overlaps)} anchor/probe overlap(s); anchors must never repeat the retention probes "
        "(training on a probe makes the gate report retention the model does not have):\n" + "\n".join(lines)
    )
