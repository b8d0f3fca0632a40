"""Read and validate uploaded demonstration files (pure Python: no Django, no torch).

Three formats, told apart by content: chat JSONL ({"messages": [...]} ending with the assistant's
demonstration), prompt JSONL ({"prompt", "demonstration"|"completion"}) and CSV with those columns.
`validate_upload` streams the file once and reports every problem with its line, field and a fix;
only then does the service save anything, streaming rows again through `iter_rows`.

Memory is bounded: rows are parsed one at a time, and duplicate detection keeps ~16-32 bytes a
row (64-bit hashes in flat arrays), so a 200,000-row upload costs a few MB whatever its rows' size.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import string
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMATS = ("chat_jsonl", "prompt_jsonl", "csv")
ROLES = ("system", "user", "assistant")
# without a tokenizer, lengths are bounded in characters at this rate: generous for English with a
# BPE vocabulary (~4 characters a token), so a row rejected here is too long under any tokenizer
CHARS_PER_TOKEN = 4
MAX_PROBLEMS = 200
PREVIEW_ROWS = 5
_SNIFF_LINES = 50


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
class Problem:
    line: int | None
    field: str | None
    message: str  # names the line and field itself, so it reads well on its own
    fix: str

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}"


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


class _Problems:
    def __init__(self, strict: bool = False):
        self.kept: list[Problem] = []
        self.omitted = 0
        self.strict = strict  # iter_rows runs on validated files: any problem there is a bug

    def add(self, line: int | None, field_name: str | None, what: str, fix: str) -> None:
        where = ", ".join(
            part for part in (f"line {line}" if line else "", f"field '{field_name}'" if field_name else "") if part
        )
        problem = Problem(line, field_name, f"{where}: {what}" if where else what, fix)
        if self.strict:
            raise ValueError(str(problem))
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(problem)
        else:
            self.omitted += 1


class _FirstSeen:
    """64-bit row hash -> first line and a 32-bit tag, in flat arrays (open addressing).

    A dict of Python ints costs ~100 bytes a row; these arrays cost 16 bytes a slot."""

    def __init__(self, slots: int = 1024):
        self._mask = slots - 1
        self._keys, self._lines, self._tags = array("Q", bytes(8 * slots)), array("I", bytes(4 * slots)), array(
            "I", bytes(4 * slots)
        )
        self._used = 0

    def add(self, key: int, tag: int, line: int) -> tuple[int, int] | None:
        """Record `key`; if it was seen before, return (first line, its tag) instead."""
        key = (key & 0xFFFF_FFFF_FFFF_FFFF) or 1  # 0 marks an empty slot
        keys, mask = self._keys, self._mask
        slot = key & mask
        while keys[slot]:
            if keys[slot] == key:
                return self._lines[slot], self._tags[slot]
            slot = (slot + 1) & mask
        keys[slot], self._lines[slot], self._tags[slot] = key, line, tag & 0xFFFF_FFFF
        self._used += 1
        if self._used * 10 > (mask + 1) * 6:
            old = zip(self._keys, self._lines, self._tags, strict=True)
            self.__init__(2 * (mask + 1))
            for old_key, old_line, old_tag in old:
                if old_key:
                    self.add(old_key, old_tag, old_line)
        return None


_PUNCTUATION_TO_SPACE = str.maketrans({c: " " for c in string.punctuation + "\u201c\u201d\u2018\u2019\u2026"})


def _near_key(text: str) -> str:
    return " ".join(text.casefold().translate(_PUNCTUATION_TO_SPACE).split())


def validate_upload(
    path: str | os.PathLike, *, limits: UploadLimits, count_tokens: Callable[[str], int] | None
) -> ValidationReport:
    path = Path(path)
    problems = _Problems()
    size = path.stat().st_size
    unit = "tokens" if count_tokens else "characters"

    def refused(fmt: str | None = None, sha: str | None = None) -> ValidationReport:
        return ValidationReport(fmt, False, problems.kept, problems.omitted, 0, 0, size, sha, unit, None, None, [])

    # the size is checked before a byte is read: a 5 GB upload must not be hashed or parsed
    if size > limits.max_bytes:
        problems.add(
            None, None, f"the file is {size / 1e6:.1f} MB; the limit is {limits.max_bytes / 1e6:.1f} MB",
            f"split it into files under {limits.max_bytes / 1e6:.0f} MB, or remove rows",
        )
        return refused()
    fmt = _detect_format(path, problems)
    if fmt is None:
        return refused(sha=_sha256_of(path))

    sha = hashlib.sha256()
    prompt_limit = limits.max_prompt_tokens * (1 if count_tokens else CHARS_PER_TOKEN)
    demo_limit = limits.max_demonstration_tokens * (1 if count_tokens else CHARS_PER_TOKEN)
    measure = count_tokens or len
    seen = _FirstSeen()
    stats = {"prompt": [None, 0, 0, None], "demonstration": [None, 0, 0, None]}  # min, sum, n, max
    preview: list[ParsedRow] = []
    rows = usable = 0
    with open(path, "rb") as handle:
        for line, record in _records(handle, fmt, sha, problems, limits.max_rows):
            rows += 1
            if record is None:
                continue
            prompt, demonstration, reference, metadata = record
            prompt_text = "\n".join(message["content"] for message in prompt)
            lengths = {"prompt": measure(prompt_text), "demonstration": measure(demonstration)}
            too_long = False
            for name, limit in (("prompt", prompt_limit), ("demonstration", demo_limit)):
                if lengths[name] > limit:
                    too_long = True
                    problems.add(
                        line, name, f"{lengths[name]:,} {unit} long; the limit is {limit:,} {unit}",
                        f"shorten the {name}, or raise the skill's limit"
                        + ("" if count_tokens else f" (without a tokenizer, {CHARS_PER_TOKEN} characters count as a token)"),
                    )
            first = seen.add(hash((_near_key(prompt_text), _near_key(demonstration))), hash((prompt_text, demonstration)), line)
            if first is not None:
                first_line, tag = first
                exact = tag == hash((prompt_text, demonstration)) & 0xFFFF_FFFF
                problems.add(
                    line, None,
                    f"duplicates line {first_line}" + ("" if exact else " (differs only in case, spacing or punctuation)"),
                    f"remove line {line} or make it a different example",
                )
            if too_long or first is not None:
                continue
            usable += 1
            for name, value in lengths.items():
                low, total, count, high = stats[name]
                stats[name] = [value if low is None else min(low, value), total + value, count + 1,
                               value if high is None else max(high, value)]
            if len(preview) < PREVIEW_ROWS:
                preview.append(_parsed_row(line, prompt, demonstration, reference, metadata))

    if rows == 0:
        problems.add(None, None, "the file has no rows", f"add at least {limits.min_rows} examples, one per line")
    elif usable < limits.min_rows:
        problems.add(
            None, None, f"only {usable} usable rows; at least {limits.min_rows} are needed",
            "fix the rows listed above or add more examples",
        )
    prompt_stats, demo_stats = (
        LengthStats(low, total / count, high) if count else None for low, total, count, high in stats.values()
    )
    return ValidationReport(
        fmt, not problems.kept and not problems.omitted, problems.kept, problems.omitted, rows, usable, size,
        sha.hexdigest(), unit, prompt_stats, demo_stats, preview,
    )


def iter_rows(path: str | os.PathLike, format: str) -> Iterator[ParsedRow]:  # noqa: A002 (the API's word)
    """Stream the rows of a file that `validate_upload` accepted; a bad row raises ValueError."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    with open(path, "rb") as handle:
        for line, record in _records(handle, format, hashlib.sha256(), _Problems(strict=True), None):
            if record is not None:
                yield _parsed_row(line, *record)


def split_rows(
    content_hashes: Sequence[str], *, seed: int, eval_fraction: float = 0.2, min_eval: int = 5, max_eval: int = 200
) -> set[int]:
    """Indices of the held-out eval rows: the same rows for the same seed, whatever the input order."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    if not 0 <= min_eval <= max_eval:
        raise ValueError(f"need 0 <= min_eval <= max_eval, got {min_eval} and {max_eval}")
    total = len(content_hashes)
    # at least one row is left to train on
    wanted = min(max(round(total * eval_fraction), min_eval), max_eval, max(total - 1, 0))
    order = sorted(
        range(total), key=lambda i: (hashlib.sha256(f"{seed}:{content_hashes[i]}".encode()).digest(), content_hashes[i])
    )
    return set(order[:wanted])


def count_tokens_with(tokenizer_json_path: str | os.PathLike) -> Callable[[str], int]:
    """A token counter from a base model's tokenizer.json (the `tokenizers` library: no torch)."""
    from tokenizers import Tokenizer  # only uploads that count tokens pay for the import

    tokenizer = Tokenizer.from_file(str(tokenizer_json_path))

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count_tokens


def _parsed_row(line: int, prompt: list[dict], demonstration: str, reference: str, metadata: dict) -> ParsedRow:
    canonical = json.dumps([prompt, demonstration, reference], ensure_ascii=False, sort_keys=True)
    return ParsedRow(line, prompt, demonstration, reference, metadata, hashlib.sha256(canonical.encode()).hexdigest())


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _detect_format(path: Path, problems: _Problems) -> str | None:
    with open(path, "rb") as handle:
        head = handle.read(8192)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            problems.add(None, None, "the file is UTF-16 text, not UTF-8", "save the file as UTF-8")
            return None
        if b"\x00" in head:
            problems.add(
                1 + head.count(b"\n", 0, head.index(b"\x00")), None,
                f"the file is binary, not UTF-8 text (a NUL byte at byte offset {head.index(b'\x00')})",
                "upload a .jsonl or .csv text file saved as UTF-8",
            )
            return None
        handle.seek(0)
        sniffed = []
        for raw in handle:
            stripped = raw.lstrip(b"\xef\xbb\xbf").strip()
            if stripped:
                sniffed.append(stripped)
            if len(sniffed) == _SNIFF_LINES:
                break
    if not sniffed:
        problems.add(None, None, "the file is empty", "upload a file with one example per line")
        return None
    if sniffed[0].startswith(b"["):
        problems.add(
            1, None, "the file is one JSON array; write one object per line (JSONL)",
            'write each example as its own line: {"prompt": ..., "demonstration": ...}',
        )
        return None
    if not sniffed[0].startswith(b"{"):
        return "csv"
    for raw in sniffed:
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict) and "messages" in obj:
            return "chat_jsonl"
        if isinstance(obj, dict) and {"prompt", "demonstration", "completion"} & obj.keys():
            return "prompt_jsonl"
    return "prompt_jsonl"  # no row says; each will be reported as missing "prompt"


# --- rows ------------------------------------------------------------------------------------------

_Record = tuple[list[dict], str, str, dict]  # prompt messages, demonstration, reference, metadata


def _text_lines(handle, sha, problems: _Problems, max_rows: int | None, bad: list[bool]) -> Iterator[tuple[int, str]]:
    offset = 0
    for number, raw in enumerate(handle, start=1):
        sha.update(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.add(
                number, None,
                f"not UTF-8: byte 0x{raw[exc.start]:02X} at byte offset {offset + exc.start} cannot be decoded",
                "save the file as UTF-8 (in most editors: Save As, Encoding: UTF-8)",
            )
            text = raw.decode("utf-8", errors="replace")
            bad[0] = True
        if number == 1:
            text = text.removeprefix("\ufeff")
        offset += len(raw)
        yield number, text
    for chunk in iter(lambda: handle.read(1 << 20), b""):  # the rest past max_rows, for the checksum
        sha.update(chunk)


def _records(handle, fmt: str, sha, problems: _Problems, max_rows: int | None) -> Iterator[tuple[int, _Record | None]]:
    """(line, record) for each data row; None for a row whose problems were reported."""
    bad = [False]  # set by _text_lines when the current line was not UTF-8
    lines = _text_lines(handle, sha, problems, max_rows, bad)
    rows = 0
    if fmt == "csv":
        source: Iterator = _csv_rows(lines, problems)
    else:
        source = ((n, text) for n, text in lines if text.strip() or bad[0])
    for line, item in source:
        rows += 1
        if max_rows is not None and rows > max_rows:
            problems.add(None, None, f"the file has more than {max_rows:,} rows", f"split it into files of at most {max_rows:,} rows")
            for _ in lines:  # drain for the checksum without parsing
                pass
            return
        if bad[0]:
            bad[0] = False
            yield line, None
            continue
        if fmt == "csv":
            yield line, item if item is None else _prompt_record(item, line, problems)
            continue
        try:
            obj = json.loads(item)
        except json.JSONDecodeError as exc:
            problems.add(line, None, f"malformed JSON at column {exc.colno}: {exc.msg}",
                         "fix the JSON on this line (one complete object per line, strings in double quotes)")
            yield line, None
            continue
        if not isinstance(obj, dict):
            problems.add(line, None, f"is a JSON {_json_type(obj)}, not an object",
                         'write each row as an object, e.g. {"prompt": "...", "demonstration": "..."}')
            yield line, None
            continue
        yield line, (_chat_record if fmt == "chat_jsonl" else _prompt_record)(obj, line, problems)


def _json_type(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _text_field(obj: dict, name: str, line: int, problems: _Problems, fix: str) -> str | None:
    value = obj.get(name)
    if name not in obj:
        problems.add(line, name, f'missing "{name}"', fix)
    elif not isinstance(value, str):
        problems.add(line, name, f"must be a string, got a JSON {_json_type(value)}", fix)
    elif not value.strip():
        problems.add(line, name, "is empty or only whitespace", f"write the {name}, or remove the row")
    else:
        return value
    return None


def _optional_fields(obj: dict, line: int, problems: _Problems) -> tuple[str | None, dict] | None:
    ok = True
    reference = None
    if obj.get("reference") not in (None, ""):
        reference = _text_field(obj, "reference", line, problems, "give the gold answer as a string, or omit it")
        ok = reference is not None
    metadata = obj.get("metadata")
    if metadata in (None, ""):
        metadata = {}
    elif isinstance(metadata, str):  # CSV carries metadata as a JSON string
        try:
            metadata = json.loads(metadata)
        except ValueError as exc:
            problems.add(line, "metadata", f"is not valid JSON ({exc})", 'write it as a JSON object, e.g. {"source": "faq"}')
            return None
    if not isinstance(metadata, dict):
        problems.add(line, "metadata", f"must be a JSON object, got a JSON {_json_type(metadata)}",
                     'write it as an object, e.g. {"source": "faq"}, or omit it')
        return None
    return (reference, metadata) if ok else None


def _prompt_record(obj: dict, line: int, problems: _Problems) -> _Record | None:
    fix = 'each row needs "prompt" and "demonstration" (or "completion") strings'
    prompt = _text_field(obj, "prompt", line, problems, fix)
    if "demonstration" in obj and "completion" in obj:
        problems.add(line, "completion", 'has both "demonstration" and "completion"', "keep one of the two")
        demonstration = None
    elif "completion" in obj:
        demonstration = _text_field(obj, "completion", line, problems, fix)
    else:
        demonstration = _text_field(obj, "demonstration", line, problems, fix)
    optional = _optional_fields(obj, line, problems)
    if prompt is None or demonstration is None or optional is None:
        return None
    reference, metadata = optional
    return [{"role": "user", "content": prompt}], demonstration, reference or demonstration, metadata


def _chat_record(obj: dict, line: int, problems: _Problems) -> _Record | None:
    example = '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'
    messages = obj.get("messages")
    if "messages" not in obj:
        problems.add(line, "messages", 'missing "messages"', f"write the row as {example}")
        return None
    if not isinstance(messages, list) or not messages:
        problems.add(line, "messages", "must be a non-empty list of messages", f"write the row as {example}")
        return None
    ok = True
    for i, message in enumerate(messages):
        name = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.add(line, name, f"is a JSON {_json_type(message)}, not a message object", 'write {"role": ..., "content": ...}')
            ok = False
            continue
        if message.get("role") not in ROLES:
            problems.add(line, f"{name}.role", f"is {message.get('role')!r}; the roles are system, user and assistant",
                         "use one of: system, user, assistant")
            ok = False
        if _text_field(message, "content", line, _Renamed(problems, f"{name}.content"), "give the message's text") is None:
            ok = False
    if not ok:
        return None
    roles = [m["role"] for m in messages]
    order_problem = _role_order_problem(roles)
    if order_problem:
        index, what, fix = order_problem
        problems.add(line, f"messages[{index}].role", what, fix)
        return None
    optional = _optional_fields(obj, line, problems)
    if optional is None:
        return None
    reference, metadata = optional
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
    return prompt, messages[-1]["content"], reference or messages[-1]["content"], metadata


def _role_order_problem(roles: list[str]) -> tuple[int, str, str] | None:
    if roles[-1] != "assistant":
        return (len(roles) - 1, f"the last message is a {roles[-1]!r} turn; it must be the assistant's demonstration",
                "end the conversation with the assistant reply to learn, or remove the messages after it")
    start = 1 if roles[0] == "system" else 0
    for index, role in enumerate(roles[start:], start=start):
        expected = "user" if (index - start) % 2 == 0 else "assistant"
        if role != expected:
            what = ("a system message can only come first" if role == "system"
                    else f"is {role!r} where a {expected!r} turn is expected; after an optional system message, "
                    "turns alternate user, assistant, user, ... ending with the assistant")
            return index, what, "reorder or merge the messages so user and assistant turns alternate"
    if len(roles) - start < 2:
        return start, "there is no user turn before the demonstration", "add the user's request before the assistant reply"
    return None


class _Renamed:
    """Reports a nested field (messages[2].content) through _text_field's flat naming."""

    def __init__(self, problems: _Problems, name: str):
        self._problems, self._name = problems, name

    def add(self, line, _field, what, fix):
        self._problems.add(line, self._name, what.replace('"content"', f'"{self._name}"'), fix)


def _csv_rows(lines: Iterator[tuple[int, str]], problems: _Problems) -> Iterator[tuple[int, dict | None]]:
    numbered = iter(lines)
    current = [0]

    def texts():
        for number, text in numbered:
            current[0] = number
            yield text

    reader = csv.reader(texts())
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = [name.strip().lower() for name in header]
        expected = "prompt, demonstration (or completion), and optionally reference, metadata"
        known = {"prompt", "demonstration", "completion", "reference", "metadata"}
        if "prompt" not in columns or not {"demonstration", "completion"} & set(columns) or len(set(columns)) != len(columns):
            problems.add(1, None, f"the CSV header is {header}; expected the columns {expected}",
                         "make the first row: prompt,demonstration,reference,metadata (the last two are optional)")
            return
        if set(columns) - known:
            problems.add(1, None, f"unknown CSV columns {sorted(set(columns) - known)}; the columns are {expected}",
                         "remove those columns, or move their values into the metadata column as JSON")
            return
        start = current[0] + 1
        for values in reader:
            if not any(v.strip() for v in values):
                start = current[0] + 1
                continue
            if len(values) != len(columns):
                problems.add(start, None, f"has {len(values)} values but the header has {len(columns)} columns",
                             "quote values that contain commas or line breaks with double quotes")
                yield start, None
            else:
                yield start, dict(zip(columns, values, strict=True))
            start = current[0] + 1
    except csv.Error as exc:
        problems.add(current[0], None, f"the CSV cannot be read past here: {exc}",
                     "check the quoting on this line (a value with a quote must be wrapped in double quotes)")
