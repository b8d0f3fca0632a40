"""Upload validation for demonstration files: every bad input a team can send, and the good ones."""

import json
import time

import pytest

from skills.parsing import (
    CHARS_PER_TOKEN,
    RowIndex,
    UploadLimits,
    count_tokens_with,
    iter_rows,
    split_rows,
    validate_upload,
)

LIMITS = UploadLimits()


def test_parsing_does_not_import_django_or_torch():
    import subprocess
    import sys

    code = "import sys, skills.parsing; print(sorted({'torch', 'django'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _chat(user: str, assistant: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def _jsonl(tmp_path, rows, name="upload.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _good_chat_rows(n=12):
    return [_chat(f"What is {i} + {i}?", f"{i} + {i} = {2 * i}.") for i in range(n)]


def _messages(report):
    return [p.message for p in report.problems]


def test_it_accepts_a_chat_jsonl_file_and_reports_its_shape(tmp_path):
    # given
    rows = _good_chat_rows(11) + [_chat("Hi there", "Hello! How can I help?", system="Be brief.")]
    path = _jsonl(tmp_path, rows)
    # when
    report = validate_upload(path, limits=LIMITS, count_tokens=None)
    # then
    assert report.ok, _messages(report)
    assert report.format == "chat_jsonl"
    assert report.row_count == report.usable_row_count == 12
    assert report.length_unit == "characters"
    assert report.demonstration_length.min == len("0 + 0 = 0.")
    assert report.preview[0].prompt == [{"role": "user", "content": "What is 0 + 0?"}]
    assert report.preview[0].reference == report.preview[0].demonstration == "0 + 0 = 0."
    assert len(report.preview) == 5
    import hashlib

    assert report.content_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_it_accepts_a_prompt_jsonl_file_with_completion_reference_and_metadata(tmp_path):
    rows = [{"prompt": f"Capital number {i}?", "completion": f"City {i}", "reference": f"city-{i}",
             "metadata": {"source": "atlas"}} for i in range(10)]
    report = validate_upload(_jsonl(tmp_path, rows), limits=LIMITS, count_tokens=None)
    assert report.ok, _messages(report)
    assert report.format == "prompt_jsonl"
    first = report.preview[0]
    assert (first.prompt, first.demonstration, first.reference, first.metadata) == (
        [{"role": "user", "content": "Capital number 0?"}], "City 0", "city-0", {"source": "atlas"})


def test_it_accepts_a_csv_file_with_quoted_commas_and_line_breaks(tmp_path):
    path = tmp_path / "upload.csv"
    lines = ["prompt,demonstration,reference,metadata"]
    lines += [f'"Say {i}, please","Line one\nline two {i}",,"{{""k"": {i}}}"' for i in range(10)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = validate_upload(path, limits=LIMITS, count_tokens=None)
    assert report.ok, _messages(report)
    assert report.format == "csv"
    rows = list(iter_rows(path, "csv"))
    assert [r.line for r in rows[:3]] == [2, 4, 6]  # each record starts a line after the previous one
    assert rows[0].demonstration == "Line one\nline two 0" and rows[0].metadata == {"k": 0}


def test_it_rejects_an_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    report = validate_upload(path, limits=LIMITS, count_tokens=None)
    assert not report.ok and _messages(report) == ["the file is empty"]


def test_it_rejects_a_binary_file(tmp_path):
    path = tmp_path / "photo.jsonl"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    report = validate_upload(path, limits=LIMITS, count_tokens=None)
    assert not report.ok
    assert _messages(report) == ["line 3: the file is binary, not UTF-8 text (a NUL byte at byte offset 8)"]


def test_it_rejects_a_latin1_file_naming_the_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps({"prompt": "Say hi", "demonstration": "hi"}, ensure_ascii=False)
    bad = json.dumps({"prompt": "Où est le café ?", "demonstration": "Ici"}, ensure_ascii=False)
    path.write_bytes((good + "\n" + bad + "\n").encode("latin-1"))
    report = validate_upload(path, limits=UploadLimits(min_rows=1), count_tokens=None)
    assert not report.ok
    [problem] = report.problems
    offset = len(good) + 1 + bad.index("ù")
    assert problem.line == 2
    assert problem.message == f"line 2: not UTF-8: byte 0xF9 at byte offset {offset} cannot be decoded"
    assert "save the file as UTF-8" in problem.fix


def test_it_rejects_a_json_array_instead_of_jsonl(tmp_path):
    path = tmp_path / "upload.json"
    path.write_text(json.dumps(_good_chat_rows(), indent=2), encoding="utf-8")
    report = validate_upload(path, limits=LIMITS, count_tokens=None)
    assert not report.ok
    assert _messages(report) == ["line 1: the file is one JSON array; write one object per line (JSONL)"]


def test_it_reports_malformed_json_with_line_and_column(tmp_path):
    rows = _good_chat_rows() + ['{"messages": [{"role": "user", "content": "hi"}']
    report = validate_upload(_jsonl(tmp_path, rows), limits=LIMITS, count_tokens=None)
    [problem] = report.problems
    assert problem.line == 13 and problem.message.startswith("line 13: malformed JSON at column 48")


def test_it_rejects_a_line_that_is_valid_json_but_not_an_object(tmp_path):
    rows = _good_chat_rows() + ['["What is 2+2?", "4"]']
    report = validate_upload(_jsonl(tmp_path, rows), limits=LIMITS, count_tokens=None)
    assert _messages(report) == ["line 13: is a JSON array, not an object"]


def test_it_reports_a_row_missing_messages(tmp_path):
    rows = _good_chat_rows() + [{"turns": [{"role": "user", "content": "hi"}]}]
    report = validate_upload(_jsonl(tmp_path, rows), limits=LIMITS, count_tokens=None)
    [problem] = report.problems
    assert (problem.line, problem.field) == (13, "messages")
    assert problem.message == "line 13, field 'messages': missing \"messages\""
    assert '"role": "assistant"' in problem.fix


def test_it_reports_a_prompt_row_missing_its_demonstration(tmp_path):
    rows = [{"prompt": f"q{i}", "demonstration": f"a{i}"} for i in range(10)] + [{"prompt": "q"}]
    report = validate_upload(_jsonl(tmp_path, rows), limits=LIMITS, count_tokens=None)
    assert _messages(report) == ["line 11, field 'demonstration': missing \"demonstration\""]


def test_it_rejects_a_conversation_whose_assistant_turn_is_not_last(tmp_path):
    late_user = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                              {"role": "user", "content": "Thanks"}]}
    report = validate_upload(_jsonl(tmp_path, _good_chat_rows() + [late_user]), limits=LIMITS, count_tokens=None)
    [problem] = report.problems
    assert problem.field == "messages[2].role"
    assert "the last message is a 'user' turn; it must be the assistant's demonstration" in problem.message


@pytest.mark.parametrize(
    ("messages", "field", "text"),
    [
        ([("assistant", "Hi"), ("assistant", "Hello")], "messages[0].role", "'assistant' where a 'user' turn"),
        ([("user", "Hi"), ("system", "Be nice"), ("assistant", "Hello")], "messages[1].role",
         "a system message can only come first"),
        ([("system", "Be nice"), ("assistant", "Hello")], "messages[1].role", "'assistant' where a 'user' turn"),
        ([("user", "Hi"), ("bot", "Hello")], "messages[1].role", "is 'bot'; the roles are"),
        ([("user", "Hi"), ("assistant", "   ")], "messages[1].content", "is empty or only whitespace"),
    ],
)
def test_it_rejects_wrong_roles_and_orders(tmp_path, messages, field, text):
    row = {"messages": [{"role": role, "content": content} for role, content in messages]}
    report = validate_upload(_jsonl(tmp_path, _good_chat_rows() + [row]), limits=LIMITS, count_tokens=None)
    [problem] = report.problems
    assert problem.line == 13 and problem.field == field and text in problem.message


def test_it_rejects_a_row_with_only_whitespace(tmp_path):
    rows = [{"prompt": f"q{i}", "demonstration": f"a{i}"} for i in range(10)] + [{"prompt": " \t", "demonstration": "x"}]
    report = validate_upload(_jsonl(tmp_path, rows), limits=LIMITS, count_tokens=None)
    assert _messages(report) == ["line 11, field 'prompt': is empty or only whitespace"]


def test_it_rejects_a_file_of_9_rows(tmp_path):
    report = validate_upload(_jsonl(tmp_path, _good_chat_rows(9)), limits=LIMITS, count_tokens=None)
    assert not report.ok
    assert _messages(report) == ["only 9 usable rows; at least 10 are needed"]


def test_it_reports_exact_and_near_duplicates_with_the_first_line(tmp_path):
    rows = _good_chat_rows(10)
    rows[3] = _chat("Hello  world", "Hi!")
    rows += [_chat("Hello  world", "Hi!"), _chat("hello world.", "hi")]
    report = validate_upload(_jsonl(tmp_path, rows), limits=LIMITS, count_tokens=None)
    assert _messages(report) == [
        "line 11: duplicates line 4",
        "line 12: duplicates line 4 (differs only in case, spacing or punctuation)",
    ]
    assert report.row_count == 12 and report.usable_row_count == 10


def test_it_rejects_a_60_mb_file_on_its_size_without_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as handle:
        handle.truncate(60 * 1024 * 1024)  # sparse: instant to make
    import builtins

    real_open = builtins.open

    def refuse_to_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise AssertionError("the oversized upload was opened")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuse_to_open)
    started = time.perf_counter()
    report = validate_upload(path, limits=LIMITS, count_tokens=None)
    assert time.perf_counter() - started < 1
    assert _messages(report) == ["the file is 62.9 MB; the limit is 52.4 MB"]
    assert report.content_sha256 is None


def test_a_file_a_byte_over_the_limit_says_by_how_much(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as handle:
        handle.truncate(50 * 1024 * 1024 + 1)

    report = validate_upload(path, limits=LIMITS, count_tokens=None)

    assert _messages(report) == ["the file is 52,428,801 bytes; the limit is 52,428,800 bytes"]


def test_it_stops_parsing_past_max_rows_but_still_checksums_the_file(tmp_path):
    import hashlib

    path = _jsonl(tmp_path, _good_chat_rows(30))
    report = validate_upload(path, limits=UploadLimits(max_rows=20), count_tokens=None)
    assert "the file has more than 20 rows" in _messages(report)
    assert report.content_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_it_rejects_a_csv_with_the_wrong_header_naming_the_expected_columns(tmp_path):
    path = tmp_path / "upload.csv"
    path.write_text("question,answer\n" + "".join(f"q{i},a{i}\n" for i in range(10)), encoding="utf-8")
    report = validate_upload(path, limits=LIMITS, count_tokens=None)
    assert report.format == "csv" and not report.ok
    [problem, too_few] = report.problems
    assert problem.message == (
        "line 1: the CSV header is ['question', 'answer']; expected the columns prompt, "
        "demonstration (or completion), and optionally reference, metadata")
    assert too_few.message == "the file has no rows"


def test_it_reports_a_csv_row_with_too_many_values(tmp_path):
    path = tmp_path / "upload.csv"
    path.write_text("prompt,completion\n" + "".join(f"q{i},a{i}\n" for i in range(10)) + "q, a, b\n")
    report = validate_upload(path, limits=LIMITS, count_tokens=None)
    assert _messages(report) == ["line 12: has 3 values but the header has 2 columns"]


def test_it_bounds_length_in_characters_without_a_tokenizer(tmp_path):
    limits = UploadLimits(max_prompt_tokens=10)
    rows = _good_chat_rows() + [_chat("x" * (10 * CHARS_PER_TOKEN + 1), "ok")]
    report = validate_upload(_jsonl(tmp_path, rows), limits=limits, count_tokens=None)
    assert _messages(report) == ["line 13, field 'prompt': 41 characters long; the limit is 40 characters"]


@pytest.fixture
def word_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate("what is the a word one two".split())}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_count_tokens_with_reads_a_tokenizer_json(word_tokenizer):
    count = count_tokens_with(word_tokenizer)
    assert count("what is the word") == 4
    assert count("") == 0


def test_it_rejects_a_prompt_too_long_in_tokens(tmp_path, word_tokenizer):
    # given 8 one-letter words: 8 tokens but 15 characters, under the 7 x 4 character bound
    rows = _good_chat_rows() + [_chat("a a a a a a a a", "ok")]
    limits = UploadLimits(max_prompt_tokens=7)
    # when
    report = validate_upload(_jsonl(tmp_path, rows), limits=limits, count_tokens=count_tokens_with(word_tokenizer))
    # then
    assert report.length_unit == "tokens"
    assert _messages(report) == ["line 13, field 'prompt': 8 tokens long; the limit is 7 tokens"]


def test_it_reports_every_problem_and_caps_the_list(tmp_path):
    rows = [{"prompt": "", "demonstration": ""} for _ in range(150)]
    report = validate_upload(_jsonl(tmp_path, rows), limits=LIMITS, count_tokens=None)
    assert len(report.problems) == 200
    assert report.problems_omitted == 150 * 2 + 1 - 200  # two fields a row, plus "only 0 usable rows"


def test_iter_rows_streams_what_validation_accepted(tmp_path):
    path = _jsonl(tmp_path, [_chat("Hi", "Hello", system="Be kind.")] + _good_chat_rows(3))
    rows = list(iter_rows(path, "chat_jsonl"))
    assert [r.line for r in rows] == [1, 2, 3, 4]
    assert rows[0].prompt == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    assert len({r.content_hash for r in rows}) == 4


def test_iter_rows_raises_on_a_row_that_would_not_validate(tmp_path):
    path = _jsonl(tmp_path, ['{"prompt": "x"}'])
    with pytest.raises(ValueError, match="line 1, field 'demonstration'"):
        list(iter_rows(path, "prompt_jsonl"))


HASHES = [f"{i:064x}" for i in range(100)]


def test_split_is_the_same_for_the_same_seed_and_differs_for_another():
    assert split_rows(HASHES, seed=7) == split_rows(HASHES, seed=7)
    assert split_rows(HASHES, seed=7) != split_rows(HASHES, seed=8)
    assert len(split_rows(HASHES, seed=7)) == 20


def test_split_holds_out_the_same_rows_whatever_their_order():
    reversed_hashes = HASHES[::-1]
    held_out = {HASHES[i] for i in split_rows(HASHES, seed=3)}
    assert {reversed_hashes[i] for i in split_rows(reversed_hashes, seed=3)} == held_out


def test_split_respects_the_min_and_max_eval_bounds():
    assert len(split_rows(HASHES[:10], seed=1)) == 5  # 20% of 10 is 2, raised to min_eval
    assert len(split_rows([f"{i}" for i in range(5000)], seed=1)) == 200  # 1000, capped at max_eval
    assert len(split_rows(HASHES[:4], seed=1)) == 3  # at least one row is left to train on


# --- one read: what the steps after validation need comes out of the same pass -----------------------

def _counting_reads(monkeypatch, path):
    """Opens of `path` and bytes read from it, through whatever `open` parsing uses."""
    import builtins

    real_open, tally = builtins.open, {"opens": 0, "bytes": 0}

    class Counted:
        def __init__(self, handle):
            self._handle = handle

        def read(self, size=-1):
            return self._count(self._handle.read(size))

        def readline(self, size=-1):
            return self._count(self._handle.readline(size))

        def __iter__(self):
            return iter(self.readline, b"")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()

        def _count(self, data):
            tally["bytes"] += len(data)
            return data

    def counting_open(file, *args, **kwargs):
        handle = real_open(file, *args, **kwargs)
        if str(file) != str(path):
            return handle
        tally["opens"] += 1
        return Counted(handle)

    monkeypatch.setattr(builtins, "open", counting_open)
    return tally


@pytest.mark.parametrize("rows", [12, 400], ids=["under 8 KiB", "past 8 KiB and 50 lines"])
def test_validation_reads_every_byte_once(tmp_path, monkeypatch, rows):
    path = _jsonl(tmp_path, _good_chat_rows(rows))
    reads = _counting_reads(monkeypatch, path)

    report = validate_upload(path, limits=LIMITS, count_tokens=None, index=RowIndex(prompts=True))

    assert report.ok and report.row_count == rows
    assert reads == {"opens": 1, "bytes": path.stat().st_size}


def test_a_file_of_no_format_is_read_once_and_still_checksummed(tmp_path, monkeypatch):
    import hashlib

    path = tmp_path / "photo.jsonl"
    path.write_bytes(b"\x89PNG\x00" + bytes(range(256)) * 100)
    reads = _counting_reads(monkeypatch, path)

    report = validate_upload(path, limits=LIMITS, count_tokens=None)

    assert not report.ok and report.content_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert reads == {"opens": 1, "bytes": path.stat().st_size}


def test_a_line_cut_by_the_format_sniffing_is_parsed_whole(tmp_path):
    # rows of ~300 bytes: the first 8 KiB ends inside a row, which must be read on, not split or lost
    rows = [{"prompt": f"Request {i}: " + "x" * 250, "demonstration": f"answer {i}"} for i in range(60)]
    path = _jsonl(tmp_path, rows)

    report = validate_upload(path, limits=LIMITS, count_tokens=None)

    assert report.ok, _messages(report)
    assert report.row_count == 60 and [r.line for r in iter_rows(path, "prompt_jsonl")] == list(range(1, 61))


def test_the_row_index_holds_the_content_hashes_iter_rows_gives(tmp_path):
    path = _jsonl(tmp_path, _good_chat_rows(40))
    index = RowIndex()

    validate_upload(path, limits=LIMITS, count_tokens=None, index=index)

    hashes = [row.content_hash for row in iter_rows(path, "chat_jsonl")]
    assert len(index) == 40 and list(index.content_hashes()) == hashes
    assert split_rows(index.content_hashes(), seed=11) == split_rows(hashes, seed=11)


def test_iter_rows_checksums_the_bytes_it_reads(tmp_path):
    import hashlib

    path = _jsonl(tmp_path, _good_chat_rows(15))
    sha = hashlib.sha256()

    rows = list(iter_rows(path, "chat_jsonl", sha=sha))

    assert len(rows) == 15 and sha.hexdigest() == validate_upload(path, limits=LIMITS, count_tokens=None).content_sha256


def test_an_eval_row_repeating_a_training_prompt_names_both_lines(tmp_path):
    training = RowIndex(prompts=True)
    validate_upload(_jsonl(tmp_path, _good_chat_rows(12), "train.jsonl"), limits=LIMITS, count_tokens=None,
                    index=training)
    eval_rows = [_chat(f"Eval question {i}?", f"E{i}") for i in range(10)]
    eval_rows[6] = _chat("  WHAT is 4 +   4?", "eight")  # training line 5, in other case and spacing

    report = validate_upload(_jsonl(tmp_path, eval_rows, "eval.jsonl"), limits=UploadLimits(min_rows=5),
                             count_tokens=None, training=training, training_name="train.jsonl")

    assert not report.ok and report.usable_row_count == 9
    [problem] = report.problems
    assert (problem.line, problem.field) == (7, "prompt")
    assert problem.message == "line 7, field 'prompt': this prompt is also line 5 of the training file train.jsonl"


def test_split_draws_what_a_full_sort_would():
    import hashlib

    hashes = [f"{i:064x}" for i in range(1000)]
    by_key = sorted(range(1000), key=lambda i: (hashlib.sha256(f"5:{hashes[i]}".encode()).digest(), hashes[i]))

    assert split_rows(hashes, seed=5) == set(by_key[:200])


# --- hostile content: a problem naming the line (and the field where known), never an exception ---------

def _with_line(tmp_path, line: str | bytes, at: int = 4):
    """Twelve good chat rows with `line` (raw) as line `at`."""
    lines = [json.dumps(row).encode() for row in _good_chat_rows()]
    lines.insert(at - 1, line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass"))
    path = tmp_path / "upload.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


_ROW = '{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]'


@pytest.mark.parametrize(("line", "field", "message"), [
    (_ROW + ', "metadata": ' + "[" * 100_000 + "}", None, "nested more than 32 levels deep"),
    (_ROW + ', "metadata": ' + "[" * 40 + "]" * 40 + "}", None, "nested more than 32 levels deep"),
    (_ROW + ', "metadata": {"n": ' + "1" * 5000 + "}}", None, "a number with 5,000 digits; at most 100 are allowed"),
    (_ROW + ', "metadata": {"n": 1e400}}', None, "the number 1e400 is out of range"),
    (_ROW + ', "metadata": {"score": NaN}}', None, "NaN is not a JSON value"),
    (_ROW + ', "metadata": {"score": -Infinity}}', None, "-Infinity is not a JSON value"),
    (_ROW + ', "metadata": {"tags": ["a", "\\ud800"]}}', "metadata.tags[1]", "half of a surrogate pair (\\ud800)"),
    (_ROW.replace("Hi?", "Hi\\udfff?") + "}", "messages[0].content", "half of a surrogate pair (\\udfff)"),
    (_ROW + ', "metadata": {"\\udbff": 1}}', 'metadata."\\udbff"', "half of a surrogate pair"),
    (_ROW.replace("Hello.", "Hel\\u0000lo.") + "}", "messages[1].content", "a NUL character"),
], ids=["100,000 brackets", "40 levels", "5,000 digits", "1e400", "NaN", "-Infinity", "surrogate in metadata",
        "surrogate in a message", "surrogate in a key", "NUL escape"])
def test_json_python_accepts_but_nothing_after_it_can_use_is_a_problem_on_its_line(tmp_path, line, field, message):
    report = validate_upload(_with_line(tmp_path, line), limits=LIMITS, count_tokens=None)

    assert not report.ok
    [problem] = report.problems
    assert (problem.line, problem.field) == (4, field)
    assert message in problem.message and problem.message.startswith("line 4")


def test_a_raw_nul_past_the_sniffed_head_is_a_problem_on_its_line(tmp_path):
    header = "prompt,demonstration\n"
    rows = "".join(f"Question number {i} with some padding to pass the head,Answer {i}\n" for i in range(200))
    path = tmp_path / "upload.csv"
    path.write_bytes((header + rows).encode() + b"Question\x00 NUL,Answer\n")

    report = validate_upload(path, limits=LIMITS, count_tokens=None)

    assert [p.line for p in report.problems] == [202]
    assert "a NUL character (byte 0x00)" in report.problems[0].message


def test_an_overlong_line_is_refused_without_being_parsed(tmp_path):
    from skills.demonstration_formats import MAX_LINE_CHARS

    line = json.dumps({"prompt": "x" * MAX_LINE_CHARS, "demonstration": "y"})

    report = validate_upload(_with_line(tmp_path, line), limits=LIMITS, count_tokens=None)

    assert _messages(report) == [f"line 4: the line is {len(line):,} characters long; the limit is {MAX_LINE_CHARS:,}"]


@pytest.mark.parametrize(("metadata", "field"), [
    ("[" * 5000, "metadata"), ('{"a": NaN}', "metadata"), ('{"a": ["\\ud800"]}', "metadata.a[0]"),
    ('{"n": ' + "9" * 200 + "}", "metadata"),
])
def test_hostile_csv_metadata_is_a_problem_on_its_line(tmp_path, metadata, field):
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["prompt", "demonstration", "metadata"])
    writer.writerows([f"Question {i}?", f"Answer {i}", "{}"] for i in range(12))
    writer.writerow(["Question 12?", "Answer 12", metadata])
    path = tmp_path / "upload.csv"
    path.write_text(out.getvalue())

    report = validate_upload(path, limits=LIMITS, count_tokens=None)

    assert [(p.line, p.field) for p in report.problems] == [(14, field)]
    assert report.problems[0].message.startswith("line 14, field")


@pytest.mark.parametrize(("filename", "message"), [
    ("", "the file has no name"), ("..", "the file has no name"), ("a\x00b.jsonl", "invisible character (U+0000)"),
    ("a\x1bb.jsonl", "invisible character (U+001B)"), ("\u202eexe.jsonl", "invisible character (U+202E)"),
    ("caf\udce9.jsonl", "the file name is not valid UTF-8 text"),
    ("n" * 300 + ".jsonl", "the file name is 306 characters long; the limit is 255"),
])
def test_an_odd_file_name_is_refused_before_a_byte_is_read(tmp_path, filename, message):
    path = _jsonl(tmp_path, _good_chat_rows())

    report = validate_upload(path, limits=LIMITS, count_tokens=None, filename=filename)

    assert [(p.field, p.line) for p in report.problems] == [("file name", None)]
    assert message in report.problems[0].message and report.content_sha256 is None


def test_a_path_in_a_file_name_is_dropped_not_refused(tmp_path):
    from skills.parsing import file_label

    assert file_label("..\\..\\windows\\x.jsonl") == file_label("../../etc/x.jsonl") == "x.jsonl"
    assert validate_upload(_jsonl(tmp_path, _good_chat_rows()), limits=LIMITS, count_tokens=None,
                           filename="../../etc/x.jsonl").ok


def _lines_of_any_kind():
    from hypothesis import strategies as st

    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
        max_leaves=10)
    texts = st.text(min_size=1).filter(str.strip)
    rows = st.fixed_dictionaries({"prompt": texts, "demonstration": texts},
                                 optional={"reference": st.text(), "metadata": values})
    # JSON text with escapes Python's json turns into what cannot be stored: half a pair, NUL
    escaped = st.builds(lambda row, escape: json.dumps(row)[:-1] + f', "metadata": {{"x": "{escape}"}}}}',
                        rows, st.sampled_from(["\\ud800", "\\udfff", "\\u0000", "ok"]))
    return st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                     rows.map(lambda r: json.dumps(r).encode()),  # NaN and Infinity as Python writes them
                     rows.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")),
                     escaped.map(str.encode))


def test_any_line_is_a_problem_or_else_storable(tmp_path_factory):
    """Property: whatever a line holds, validation reports and never raises; and when it accepts the file,
    every row it gives can be hashed and stored as JSON (no NaN, no NUL, no lone surrogate)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("any-line")
    good = [json.dumps({"prompt": f"Question number {i}?", "demonstration": f"Answer {i}."}).encode() for i in range(12)]
    accepted = []

    @settings(max_examples=400, deadline=None)
    @given(line=_lines_of_any_kind(), at=st.integers(min_value=0, max_value=12))
    def check(line, at):
        path = folder / "upload.jsonl"
        path.write_bytes(b"\n".join([*good[:at], line, *good[at:]]) + b"\n")
        report = validate_upload(path, limits=LIMITS, count_tokens=None, index=RowIndex(prompts=True))
        if not report.ok:
            assert report.problems and all(str(p).encode("utf-8") for p in report.problems)
            return
        accepted.append(line)
        for row in iter_rows(path, report.format):
            stored = json.dumps([row.prompt, row.demonstration, row.reference, row.metadata], allow_nan=False)
            assert "\\u0000" not in stored and stored.encode("utf-8")

    check()
    assert len(accepted) > 50  # the property was tried on accepted files, not only refused ones
