"""The three demonstration file formats, read row by row (pure Python; used by skills.parsing).

Each reader yields (line, record) and reports what is wrong with a row to a ProblemList, naming
the line, the field and a fix, so that one pass over an upload finds every problem.

Uploads come from outside, so every row's JSON goes through `load_json`: Python's json accepts things
that crash later (thousands of nested brackets: RecursionError; a 5,000-digit integer: ValueError; a lone
surrogate "\\ud800": UnicodeEncodeError when the row is hashed or saved) or that the database refuses
(NaN, Infinity, a NUL character). Each of those is a refusal naming the line, not a traceback.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

FORMATS = ("chat_jsonl", "prompt_jsonl", "csv")
ROLES = ("system", "user", "assistant")
MAX_PROBLEMS = 200
_SNIFF_LINES = 50

# A chat row is 3 levels deep (row, messages, message); the rest is for metadata.
MAX_JSON_DEPTH = 32
# Digits of one JSON number. PostgreSQL's jsonb takes more; no honest metadata needs them, and Python refuses
# to convert integers past 4,300 digits at all.
MAX_NUMBER_DIGITS = 100
# A row's texts are bounded by the token limits (a few thousand characters each); a line this long is a file
# without line breaks, and parsing it whole would cost seconds for nothing.
MAX_LINE_CHARS = 1 << 20


@dataclass(frozen=True)
class Problem:
    line: int | None
    field: str | None
    message: str  # names the line and field itself, so it reads well on its own
    fix: str

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}"


class ProblemList:
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


class JSONRefused(ValueError):
    """JSON that cannot be read, or that would crash later or not be stored; `field` is where in the value
    (e.g. "metadata.tags[2]") when that is known."""

    def __init__(self, message: str, fix: str, field: str | None = None, *, malformed: bool = False):
        super().__init__(message)
        self.message, self.fix, self.field, self.malformed = message, fix, field, malformed

    def within(self, parent: str) -> str:
        """The field as a path inside `parent` (e.g. "metadata.tags[2]")."""
        if not self.field:
            return parent
        return f"{parent}{self.field}" if self.field.startswith("[") else f"{parent}.{self.field}"

    def __str__(self) -> str:
        return f"{f'at {self.field}: ' if self.field else ''}{self.message} — {self.fix}"


def load_json(text: str | bytes):
    """`json.loads` for text from outside: raises JSONRefused (a ValueError) for malformed JSON and for what
    Python's json accepts but nothing after it can use — nesting past MAX_JSON_DEPTH, numbers past
    MAX_NUMBER_DIGITS digits or past a float's range, NaN and Infinity, lone surrogates, NUL characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise JSONRefused(f"malformed JSON at column {exc.colno}: {exc.msg}",
                          "fix the JSON (strings in double quotes, no trailing commas)", malformed=True) from None
    except RecursionError:  # the C scanner stops at Python's recursion limit (~1,000 levels)
        raise _too_deep() from None
    # Only an escape makes a lone surrogate or a NUL out of valid UTF-8, and only many brackets nest deep:
    # the common row skips the walk.
    escaped = "\\ud" in text or "\\uD" in text or "\\u0000" in text
    if escaped or text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        _check_values(value)
    return value


def _too_deep() -> JSONRefused:
    return JSONRefused(f"nested more than {MAX_JSON_DEPTH} levels deep",
                       "flatten it: a row is an object of strings, and its metadata a few levels deep at most")


def _json_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_NUMBER_DIGITS:
        raise JSONRefused(f"a number with {digits:,} digits; at most {MAX_NUMBER_DIGITS} are allowed",
                          "write a long identifier as a string, in double quotes")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or len(text) > 2 * MAX_NUMBER_DIGITS:
        raise JSONRefused(f"the number {text[:24]}{'…' if len(text) > 24 else ''} is out of range",
                          "use a number between -1e308 and 1e308, or write it as a string")
    return value


def _json_constant(name: str):
    raise JSONRefused(f"{name} is not a JSON value (JSON has no NaN or Infinity; Python's json writes them)",
                      "write null, or the value as a string")


# made once: json.loads with hooks would build a decoder a call
_DECODER = json.JSONDecoder(parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _check_values(value) -> None:
    """Depth, and strings a database cannot store (NUL) or encode (a lone surrogate), keys included."""
    stack = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list) and depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(item, dict):
            for key, sub in item.items():
                path = f"{where}.{_label(key)}" if where else _label(key)
                _check_text(key, path)
                stack.append((sub, path, depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}[{i}]", depth + 1) for i, sub in enumerate(item))
        elif isinstance(item, str):
            _check_text(item, where)


def _check_text(text: str, where: str) -> None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return
    if found.group() == "\x00":
        raise JSONRefused("a NUL character (\\u0000), which cannot be stored", "remove it", where or None)
    raise JSONRefused(f"half of a surrogate pair (\\u{ord(found.group()):04x}), which is not a character",
                      "write the character itself (saved as UTF-8), or both halves of its pair", where or None)


def _label(key: str) -> str:
    """A key as a field path part, safe to show: escaped (json.dumps) unless it is a plain name; at most 40
    characters."""
    shown = key if key.isidentifier() and key.isascii() else json.dumps(key)
    return shown if len(shown) <= 40 else shown[:39] + "…"


def detect_format(handle, problems: ProblemList) -> tuple[str | None, list[bytes]]:
    """The format of the file open in `handle` (binary), from its first 8 KiB and first non-blank lines,
    and the raw lines read to tell it: parsing goes on from them, so no byte is read twice.
    The format is None, with a problem reported, when the file is none of FORMATS."""
    head = handle.read(8192)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        problems.add(None, None, "the file is UTF-16 text, not UTF-8", "save the file as UTF-8")
        return None, [head]
    if b"\x00" in head:
        nul = head.index(b"\x00")
        problems.add(
            1 + head.count(b"\n", 0, nul), None,
            f"the file is binary, not UTF-8 text (a NUL byte at byte offset {nul})",
            "upload a .jsonl or .csv text file saved as UTF-8",
        )
        return None, [head]
    *complete, rest = head.split(b"\n")
    read = [raw + b"\n" for raw in complete]
    if rest:  # the 8 KiB ended inside a line: finish it
        read.append(rest + handle.readline())
    sniffed = [s for s in (raw.lstrip(b"\xef\xbb\xbf").strip() for raw in read) if s][:_SNIFF_LINES]
    while len(sniffed) < _SNIFF_LINES:
        raw = handle.readline()
        if not raw:
            break
        read.append(raw)
        stripped = raw.lstrip(b"\xef\xbb\xbf").strip()
        if stripped:
            sniffed.append(stripped)
    return _format_of(sniffed, problems), read


def _format_of(sniffed: list[bytes], problems: ProblemList) -> str | None:
    if not sniffed:
        problems.add(None, None, "the file is empty", "upload a file with one example per line")
        return None
    if sniffed[0].startswith(b"["):
        problems.add(
            1, None, "the file is one JSON array; write one object per line (JSONL)",
            'write each example as its own line: {"prompt": ..., "demonstration": ...}',
        )
        return None
    if sniffed[0] == b"{":
        problems.add(
            1, None, "each JSON object is spread over several lines; write one object per line (JSONL)",
            "write each example on a single line, e.g. with json.dumps(row) per line",
        )
        return None
    if not sniffed[0].startswith(b"{"):
        return "csv"
    for raw in sniffed:
        try:
            obj = load_json(raw)
        except ValueError:
            continue
        if isinstance(obj, dict) and "messages" in obj:
            return "chat_jsonl"
        if isinstance(obj, dict) and {"prompt", "demonstration", "completion"} & obj.keys():
            return "prompt_jsonl"
    return "prompt_jsonl"  # no row says; each will be reported as missing "prompt"


Record = tuple[list[dict], str, str, dict]  # prompt messages, demonstration, reference, metadata


def _text_lines(raw_lines: Iterator[bytes], sha, problems: ProblemList, bad: list[bool]) -> Iterator[tuple[int, str]]:
    offset = 0
    for number, raw in enumerate(raw_lines, start=1):
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
        else:
            nul = text.find("\x00")
            if nul >= 0:  # valid UTF-8, and CSV reads it, but no database stores it
                problems.add(number, None, f"a NUL character (byte 0x00) at byte offset {offset + len(text[:nul].encode())}",
                             "remove it: a text file has no NUL characters (was a binary file pasted in?)")
                bad[0] = True
        if number == 1:
            text = text.removeprefix("\ufeff")
        offset += len(raw)
        yield number, text


def read_records(raw_lines: Iterator[bytes], fmt: str, sha, problems: ProblemList,
                 max_rows: int | None) -> Iterator[tuple[int, Record | None]]:
    """(line, record) for each data row of `raw_lines` (a binary file, or an iterator of its raw lines);
    None for a row whose problems were reported. Every byte goes into `sha`, also past `max_rows`."""
    bad = [False]  # set by _text_lines when the current line was not UTF-8
    lines = _text_lines(raw_lines, sha, problems, bad)
    rows = 0
    source = _csv_rows(lines, problems) if fmt == "csv" else lines
    for line, item in source:
        if fmt != "csv" and item.isspace() and not bad[0]:
            continue  # blank lines, e.g. the trailing one many editors add
        rows += 1
        if max_rows is not None and rows > max_rows:
            problems.add(None, None, f"the file has more than {max_rows:,} rows",
                         f"split it into files of at most {max_rows:,} rows")
            lines.close()
            for raw in raw_lines:  # the checksum covers the rest unparsed
                sha.update(raw)
            return
        if bad[0]:
            bad[0] = False
            yield line, None
            continue
        if fmt == "csv":
            yield line, item if item is None else _prompt_record(item, line, problems)
            continue
        length = len(item) if len(item) <= MAX_LINE_CHARS else len(item.rstrip("\r\n"))
        if length > MAX_LINE_CHARS:
            problems.add(line, None, f"the line is {length:,} characters long; the limit is {MAX_LINE_CHARS:,}",
                         "write one example per line: a row's texts are a few thousand characters at most")
            yield line, None
            continue
        try:
            obj = load_json(item.rstrip())  # the newline would put JSON errors on a phantom line 2
        except JSONRefused as exc:
            problems.add(line, exc.field, exc.message,
                         "fix the JSON on this line (one complete object per line, strings in double quotes)"
                         if exc.malformed else exc.fix)
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


def _text_field(obj: dict, name: str, line: int, problems: ProblemList, fix: str, label: str = "") -> str | None:
    value, label = obj.get(name), label or name
    if name not in obj:
        problems.add(line, label, f'missing "{label}"', fix)
    elif not isinstance(value, str):
        problems.add(line, label, f"must be a string, got a JSON {_json_type(value)}", fix)
    elif not value or value.isspace():
        problems.add(line, label, "is empty or only whitespace", f"write the {label}, or remove the row")
    else:
        return value
    return None


def _optional_fields(obj: dict, line: int, problems: ProblemList) -> tuple[str | None, dict] | None:
    if "reference" not in obj and "metadata" not in obj:
        return None, {}
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
            metadata = load_json(metadata)
        except JSONRefused as exc:
            problems.add(line, exc.within("metadata"), f"is not usable JSON ({exc.message})",
                         'write it as a JSON object, e.g. {"source": "faq"}' if exc.malformed else exc.fix)
            return None
    if not isinstance(metadata, dict):
        problems.add(line, "metadata", f"must be a JSON object, got a JSON {_json_type(metadata)}",
                     'write it as an object, e.g. {"source": "faq"}, or omit it')
        return None
    return (reference, metadata) if ok else None


def _prompt_record(obj: dict, line: int, problems: ProblemList) -> Record | None:
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


def _chat_record(obj: dict, line: int, problems: ProblemList) -> Record | None:
    example = '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'
    messages = obj.get("messages")
    if "messages" not in obj:
        problems.add(line, "messages", 'missing "messages"', f"write the row as {example}")
        return None
    if not isinstance(messages, list) or not messages:
        problems.add(line, "messages", "must be a non-empty list of messages", f"write the row as {example}")
        return None
    if not _well_formed(messages):
        _report_messages(messages, line, problems)
        return None
    roles = tuple(m["role"] for m in messages)
    order_problem = None if roles in _COMMON_ORDERS else _role_order_problem(list(roles))
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


_COMMON_ORDERS = {("user", "assistant"), ("system", "user", "assistant")}


def _well_formed(messages: list) -> bool:
    # the fast path: most rows are fine, and saying why a row is not can wait for _report_messages
    for message in messages:
        if type(message) is not dict or message.get("role") not in ROLES:
            return False
        content = message.get("content")
        if type(content) is not str or not content or content.isspace():
            return False
    return True


def _report_messages(messages: list, line: int, problems: ProblemList) -> None:
    for i, message in enumerate(messages):
        name = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.add(line, name, f"is a JSON {_json_type(message)}, not a message object", 'write {"role": ..., "content": ...}')
            continue
        if message.get("role") not in ROLES:
            problems.add(line, f"{name}.role", f"is {message.get('role')!r}; the roles are system, user and assistant",
                         "use one of: system, user, assistant")
        _text_field(message, "content", line, problems, "give the message's text", f"{name}.content")


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


def _csv_rows(lines: Iterator[tuple[int, str]], problems: ProblemList) -> Iterator[tuple[int, dict | None]]:
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
