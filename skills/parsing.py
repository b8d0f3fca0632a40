"""Read and validate uploaded demonstration files (pure Python: no Django, no torch).

Three formats, told apart by content: chat JSONL ({"messages": [...]} ending with the assistant's
demonstration), prompt JSONL ({"prompt", "demonstration"|"completion"}) and CSV with those columns.
`validate_upload` reads the file once, every byte once, and reports every problem with its line,
field and a fix. What the steps after it need goes into a `RowIndex` on the way (the content hashes the
held-out split is drawn from; the prompts an eval file must not repeat), so nothing reads the file again
to decide anything. Saving streams the rows once more through `iter_rows`, feeding a checksum, so that a
file changed since it was validated is refused rather than saved.

Hostile content is a problem like any other: every row's JSON goes through `load_json` (nesting, digits,
NaN, lone surrogates, NUL: see demonstration_formats), lines are bounded, and the file's name is checked
before a byte is read, since it is shown to people and stored.

Memory is bounded: rows are parsed one at a time, and duplicate detection keeps ~16-32 bytes a
row (64-bit hashes in flat arrays); a RowIndex adds 32 bytes a row (a sha256 digest), and ~16-32 more
when it keeps prompts. A 200,000-row upload costs under 20 MB whatever its rows' size.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import os
import re
import string
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from skills.demonstration_formats import (
    FORMATS,
    JSONRefused,
    Problem,
    ProblemList,
    detect_format,
    load_json,
    read_records,
)

__all__ = [
    "CHARS_PER_TOKEN", "FORMATS", "JSONRefused", "LengthStats", "ParsedRow", "Problem", "RowIndex", "UploadLimits",
    "ValidationReport", "count_tokens_with", "file_label", "iter_rows", "load_json", "prompt_key", "sizes_told_apart",
    "split_rows", "validate_upload",
]

# without a tokenizer, lengths are bounded in characters at this rate: generous for English with a
# BPE vocabulary (~4 characters a token), so a row rejected here is too long under any tokenizer
CHARS_PER_TOKEN = 4
PREVIEW_ROWS = 5
MAX_FILENAME_CHARS = 255  # DemonstrationSet.filename's column
# control characters (C0, DEL, C1), bidirectional overrides (they make "gpj.exe" read "exe.jpg") and lone
# surrogates (what Python makes of a file name's bytes that are not UTF-8)
_ODD_IN_NAMES = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_rows: int = 200_000
    min_rows: int = 10
    max_prompt_tokens: int = 1024
    max_demonstration_tokens: int = 1024

    def __post_init__(self):
        for name in ("max_bytes", "max_rows", "min_rows", "max_prompt_tokens", "max_demonstration_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"UploadLimits.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.min_rows > self.max_rows:
            raise ValueError(f"UploadLimits.min_rows ({self.min_rows}) exceeds max_rows ({self.max_rows})")


@dataclass(frozen=True)
class ParsedRow:
    line: int
    prompt: list[dict]  # chat messages ending with a user turn
    demonstration: str
    reference: str  # the gold answer for scoring; the demonstration unless the row gives one
    metadata: dict
    content_hash: str  # sha256 of the row's prompt, demonstration and reference


@dataclass(frozen=True)
class LengthStats:
    min: int
    mean: float
    max: int


@dataclass(frozen=True)
class ValidationReport:
    format: str | None  # one of FORMATS; None when the file could not be read as any of them
    ok: bool
    problems: list[Problem]
    problems_omitted: int  # problems found beyond the first MAX_PROBLEMS
    row_count: int  # non-blank data rows read
    usable_row_count: int  # rows without problems, duplicates excluded
    size_bytes: int
    content_sha256: str | None  # of the raw bytes; None when the file was refused before reading
    length_unit: str  # "tokens" when a tokenizer counted, else "characters"
    prompt_length: LengthStats | None
    demonstration_length: LengthStats | None
    preview: list[ParsedRow]

    def to_dict(self) -> dict:
        return asdict(self)


class _Lengths:
    def __init__(self):
        self.low, self.total, self.count, self.high = None, 0, 0, 0

    def add(self, value: int) -> None:
        self.low = value if self.low is None or value < self.low else self.low
        self.high = value if value > self.high else self.high
        self.total += value
        self.count += 1

    def summary(self) -> LengthStats | None:
        return LengthStats(self.low, self.total / self.count, self.high) if self.count else None


class _FirstSeen:
    """64-bit row hash -> first line and a 32-bit tag, in flat arrays (open addressing).

    A dict of Python ints costs ~100 bytes a row; these arrays cost 16 bytes a slot."""

    def __init__(self, slots: int = 1 << 14):
        self._mask = slots - 1
        # repetition fills in place; array(typecode, bytes(n)) would first build an n-byte temporary
        self._keys = array("Q", [0]) * slots
        self._lines = array("I", [0]) * slots
        self._tags = array("I", [0]) * slots
        self._used = 0

    def _slot(self, key: int) -> int:
        """Where `key` is, or the empty slot where it would go (linear probing)."""
        keys, mask = self._keys, self._mask
        slot = key & mask
        while keys[slot] and keys[slot] != key:
            slot = (slot + 1) & mask
        return slot

    def add(self, key: int, tag: int, line: int) -> tuple[int, int] | None:
        """Record `key`; if it was seen before, return (first line, its tag) instead."""
        key = (key & 0xFFFF_FFFF_FFFF_FFFF) or 1  # 0 marks an empty slot
        slot = self._slot(key)
        if self._keys[slot]:
            return self._lines[slot], self._tags[slot]
        self._keys[slot], self._lines[slot], self._tags[slot] = key, line, tag & 0xFFFF_FFFF
        self._used += 1
        if self._used * 10 > (self._mask + 1) * 6:  # past 60% full, probing slows down: double
            self._grow()
        return None

    def get(self, key: int) -> tuple[int, int] | None:
        """(first line, its tag) of `key` if it was added, without adding it."""
        slot = self._slot((key & 0xFFFF_FFFF_FFFF_FFFF) or 1)
        return (self._lines[slot], self._tags[slot]) if self._keys[slot] else None

    def _grow(self) -> None:
        old = zip(self._keys, self._lines, self._tags, strict=True)
        self.__init__(2 * (self._mask + 1))
        for key, line, tag in old:
            if key:
                slot = self._slot(key)
                self._keys[slot], self._lines[slot], self._tags[slot] = key, line, tag
                self._used += 1


def prompt_key(prompt: list[dict]) -> str:
    """A prompt, compared the way a reader would: case and runs of whitespace ignored. The upload uses it to
    refuse eval rows that repeat training rows; rehearsal, to keep every eval case out of training."""
    return json.dumps([(m["role"], " ".join(m["content"].lower().split())) for m in prompt])


class RowIndex:
    """What a validation pass keeps of each row for the steps after it, in flat arrays: the sha256 of the
    row's content (the held-out split is drawn from these) and, with `prompts`, a 64-bit key of its prompt
    and its line (an eval file is checked against these). Positions are `iter_rows`'s order."""

    def __init__(self, *, prompts: bool = False):
        self._digests = bytearray()
        self._prompts = _FirstSeen() if prompts else None

    def __len__(self) -> int:
        return len(self._digests) // 32

    def add(self, line: int, prompt: list[dict], demonstration: str, reference: str) -> None:
        self._digests += _content_digest(prompt, demonstration, reference)
        if self._prompts is not None:
            # Python's str hash is per process, which is enough: the eval file is checked in the same request
            self._prompts.add(hash(prompt_key(prompt)), 0, line)

    def content_hashes(self) -> Sequence[str]:
        """Each row's `ParsedRow.content_hash`, made one at a time as it is asked for."""
        return _HexDigests(self._digests)

    def line_of_prompt(self, prompt: list[dict]) -> int | None:
        """The first line whose prompt equals this one under `prompt_key`. Keys are 64 bits: two different
        prompts collide with odds of ~1e-9 for 200,000 rows against 200,000."""
        if self._prompts is None:
            raise ValueError("this RowIndex keeps no prompts; make it with RowIndex(prompts=True)")
        found = self._prompts.get(hash(prompt_key(prompt)))
        return None if found is None else found[0]


class _HexDigests(Sequence):
    def __init__(self, digests: bytearray):
        self._digests = digests

    def __len__(self) -> int:
        return len(self._digests) // 32

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._digests[32 * index:32 * index + 32].hex()


_PUNCTUATION_TO_SPACE = str.maketrans({c: " " for c in string.punctuation + "\u201c\u201d\u2018\u2019\u2026"})
_ASCII_PUNCTUATION_TO_SPACE = bytes.maketrans(string.punctuation.encode(), b" " * len(string.punctuation))


def _near_key(text: str) -> bytes | str:
    """The text with case, spacing and punctuation erased: rows equal under it are near duplicates."""
    if text.isascii():  # bytes.translate is a C table lookup, ~10x str.translate's dict
        return b" ".join(text.lower().encode().translate(_ASCII_PUNCTUATION_TO_SPACE).split())
    return " ".join(text.casefold().translate(_PUNCTUATION_TO_SPACE).split())


def file_label(name: str) -> str:
    """The name a client gave its file, as a label: the part after the last path separator (either kind),
    trimmed. Shown to people and stored; never used as a path."""
    return re.split(r"[/\\]", name)[-1].strip()


def _file_name_problem(label: str) -> tuple[str, str] | None:
    if label in ("", ".", ".."):
        return "the file has no name", "give the file a name, e.g. demonstrations.jsonl"
    odd = _ODD_IN_NAMES.search(label)
    if odd is not None:
        what = ("is not valid UTF-8 text" if "\ud800" <= odd.group() <= "\udfff"
                else f"has an invisible character (U+{ord(odd.group()):04X})")
        return f"the file name {what}", "rename the file with letters, digits, dots, dashes and spaces only"
    if len(label) > MAX_FILENAME_CHARS:
        return (f"the file name is {len(label):,} characters long; the limit is {MAX_FILENAME_CHARS}",
                "rename the file with a shorter name")
    return None


def sizes_told_apart(size: int, limit: int) -> tuple[str, str]:
    """`size` and `limit` in the limit's unit (MB, kB or bytes) with the fewest decimals (up to 3) that tell
    them apart, else both in bytes: a file a few bytes over the limit must not read "52.4 MB; the limit is
    52.4 MB"."""
    scale, unit = (1e6, "MB") if limit >= 1e6 else (1e3, "kB") if limit >= 1e3 else (1, "")
    for decimals in (1, 2, 3) if unit else ():
        shown = f"{size / scale:,.{decimals}f} {unit}", f"{limit / scale:,.{decimals}f} {unit}"
        if shown[0] != shown[1]:
            return shown
    return f"{size:,} bytes", f"{limit:,} bytes"


def validate_upload(
    path: str | os.PathLike, *, limits: UploadLimits, count_tokens: Callable[[str], int] | None,
    index: RowIndex | None = None, training: RowIndex | None = None, training_name: str = "",
    filename: str | None = None,
) -> ValidationReport:
    """Read the file once and report it. Every row that parses goes into `index` when one is given. With
    `training` (the training file's index, with prompts), a row whose prompt is a training row's is a
    problem naming both lines: the model would be scored on what it trained on. `filename`, the name the
    client gave the file, is refused before a byte is read when it cannot be shown or stored."""
    path = Path(path)
    problems = ProblemList()
    size = path.stat().st_size
    unit = "tokens" if count_tokens else "characters"

    def refused(fmt: str | None = None, sha: str | None = None) -> ValidationReport:
        return ValidationReport(fmt, False, problems.kept, problems.omitted, 0, 0, size, sha, unit, None, None, [])

    name_problem = _file_name_problem(file_label(filename)) if filename is not None else None
    if name_problem is not None:
        problems.add(None, "file name", *name_problem)
        return refused()
    # the size is checked before a byte is read: a 5 GB upload must not be hashed or parsed
    if size > limits.max_bytes:
        shown, limit = sizes_told_apart(size, limits.max_bytes)
        problems.add(None, None, f"the file is {shown}; the limit is {limit}",
                     f"split it into files under {limits.max_bytes / 1e6:.0f} MB, or remove rows")
        return refused()
    sha = hashlib.sha256()
    prompt_limit = limits.max_prompt_tokens * (1 if count_tokens else CHARS_PER_TOKEN)
    demo_limit = limits.max_demonstration_tokens * (1 if count_tokens else CHARS_PER_TOKEN)
    measure = count_tokens or len
    seen = _FirstSeen()
    prompt_stats, demo_stats = _Lengths(), _Lengths()
    preview: list[ParsedRow] = []
    rows = usable = 0
    with open(path, "rb") as handle:
        fmt, head = detect_format(handle, problems)
        if fmt is None:
            for raw in head:
                sha.update(raw)
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
            return refused(sha=sha.hexdigest())
        for line, record in read_records(itertools.chain(head, handle), fmt, sha, problems, limits.max_rows):
            rows += 1
            if record is None:
                continue
            prompt, demonstration, reference, metadata = record
            if index is not None:
                index.add(line, prompt, demonstration, reference)
            prompt_text = prompt[0]["content"] if len(prompt) == 1 else "\n".join(m["content"] for m in prompt)
            prompt_length, demo_length = measure(prompt_text), measure(demonstration)
            too_long = prompt_length > prompt_limit or demo_length > demo_limit
            for name, length, limit in (("prompt", prompt_length, prompt_limit), ("demonstration", demo_length, demo_limit)):
                if length > limit:
                    problems.add(
                        line, name, f"{length:,} {unit} long; the limit is {limit:,} {unit}",
                        f"shorten the {name}, or raise the skill's limit"
                        + ("" if count_tokens else f" (without a tokenizer, {CHARS_PER_TOKEN} characters count as a token)"),
                    )
            # Python's str hash is per process, which is all a single pass needs, and fast
            exact_tag = hash((prompt_text, demonstration)) & 0xFFFF_FFFF
            # one call for both texts; the spaced NUL keeps "ab"+"c" apart from "a"+"bc"
            first = seen.add(hash(_near_key(f"{prompt_text} \x00 {demonstration}")), exact_tag, line)
            if first is not None:
                first_line, tag = first
                exact = tag == exact_tag
                problems.add(
                    line, None,
                    f"duplicates line {first_line}" + ("" if exact else " (differs only in case, spacing or punctuation)"),
                    f"remove line {line} or make it a different example",
                )
            leaked = training.line_of_prompt(prompt) if training is not None else None
            if leaked is not None:
                problems.add(
                    line, "prompt", f"this prompt is also line {leaked} of the training file {training_name}",
                    "remove it from one of the two files: a case the model trained on does not measure the skill",
                )
            if too_long or first is not None or leaked is not None:
                continue
            usable += 1
            prompt_stats.add(prompt_length)
            demo_stats.add(demo_length)
            if len(preview) < PREVIEW_ROWS:
                preview.append(_parsed_row(line, prompt, demonstration, reference, metadata))

    if rows == 0:
        problems.add(None, None, "the file has no rows", f"add at least {limits.min_rows} examples, one per line")
    elif usable < limits.min_rows:
        problems.add(
            None, None, f"only {usable} usable rows; at least {limits.min_rows} are needed",
            "fix the rows listed above or add more examples",
        )
    return ValidationReport(
        fmt, not problems.kept and not problems.omitted, problems.kept, problems.omitted, rows, usable, size,
        sha.hexdigest(), unit, prompt_stats.summary(), demo_stats.summary(), preview,
    )


def iter_rows(path: str | os.PathLike, format: str, *, sha=None) -> Iterator[ParsedRow]:  # noqa: A002 (the API's word)
    """Stream the rows of a file that `validate_upload` accepted; a bad row raises ValueError. Every byte
    read goes into `sha` (a hashlib object) when one is given: after the last row, it is the file's."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    sha = sha if sha is not None else hashlib.sha256()
    with open(path, "rb") as handle:
        for line, record in read_records(handle, format, sha, ProblemList(strict=True), None):
            if record is not None:
                yield _parsed_row(line, *record)


def split_rows(
    content_hashes: Sequence[str], *, seed: int, eval_fraction: float = 0.2, min_eval: int = 5, max_eval: int = 200
) -> set[int]:
    """Indices of the held-out eval rows: the same rows for the same seed, whatever the input order.
    Holds at most `max_eval` keys at a time, not one a row."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    if not 0 <= min_eval <= max_eval:
        raise ValueError(f"need 0 <= min_eval <= max_eval, got {min_eval} and {max_eval}")
    total = len(content_hashes)
    # at least one row is left to train on
    wanted = min(max(round(total * eval_fraction), min_eval), max_eval, max(total - 1, 0))
    # nsmallest is sorted(...)[:wanted], ties and all, in O(wanted) memory
    order = heapq.nsmallest(
        wanted, range(total),
        key=lambda i: (hashlib.sha256(f"{seed}:{content_hashes[i]}".encode()).digest(), content_hashes[i]),
    )
    return set(order)


def count_tokens_with(tokenizer_json_path: str | os.PathLike) -> Callable[[str], int]:
    """A token counter from a base model's tokenizer.json (the `tokenizers` library: no torch)."""
    from tokenizers import Tokenizer  # only uploads that count tokens pay for the import

    tokenizer = Tokenizer.from_file(str(tokenizer_json_path))

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count_tokens


def _content_digest(prompt: list[dict], demonstration: str, reference: str) -> bytes:
    canonical = json.dumps([prompt, demonstration, reference], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).digest()


def _parsed_row(line: int, prompt: list[dict], demonstration: str, reference: str, metadata: dict) -> ParsedRow:
    return ParsedRow(line, prompt, demonstration, reference, metadata,
                     _content_digest(prompt, demonstration, reference).hex())
