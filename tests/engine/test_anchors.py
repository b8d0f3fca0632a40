import hashlib
import json
from collections import Counter

import pytest

from workers.engine.contract.anchors import (
    ANCHOR_CATEGORIES,
    ANCHORS_PATH,
    check_no_probe_overlap,
    find_overlaps,
    load_anchor_pool,
    normalise,
)
from workers.engine.contract.probes import load_probes

PROBE = "What is 2 + 3? Answer with just the number."


def _write(tmp_path, rows, name="anchors.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _row(number, prompt, category="questions"):
    return {"id": f"{category}-{number:03d}", "category": category, "prompt": prompt}


GOOD_ROWS = [
    _row(1, "Why do leaves change colour in autumn?"),
    _row(2, "Write a short note thanking a neighbour.", "instructions"),
    _row(3, "Name three fruits that are rich in vitamin C.", "lists"),
]


def test_the_shipped_pool_loads_with_every_category_well_filled():
    # given the pool shipped beside this module
    # when it is loaded
    pool = load_anchor_pool()
    # then it is large, covers every category with at least 25 prompts, and names its exact bytes
    assert len(pool) >= 300
    counts = Counter(pool.categories)
    assert set(counts) == set(ANCHOR_CATEGORIES)
    assert min(counts.values()) >= 25, counts
    assert pool.sha256 == hashlib.sha256(ANCHORS_PATH.read_bytes()).hexdigest()
    assert pool.path == ANCHORS_PATH
    assert len(set(pool.ids)) == len(pool.ids)
    assert all(anchor_id.startswith(f"{category}-") for anchor_id, category in zip(pool.ids, pool.categories, strict=True))


def test_the_shipped_prompts_are_short_enough_for_a_small_chat_model():
    pool = load_anchor_pool()
    for anchor_id, prompt in zip(pool.ids, pool.prompts, strict=True):
        assert 5 <= len(prompt.split()) <= 60, anchor_id


def test_the_shipped_pool_never_repeats_a_retention_probe():
    # given the gate's probes
    probes = [probe.prompt for probe in load_probes()]
    # when the shipped pool is checked against them, then nothing overlaps
    check_no_probe_overlap(load_anchor_pool(), probes)
    assert find_overlaps(load_anchor_pool().prompts, probes) == []


def test_each_anchor_becomes_one_user_message():
    pool = load_anchor_pool()
    messages = pool.rows_as_messages()
    assert len(messages) == len(pool)
    assert messages[0] == [{"role": "user", "content": pool.prompts[0]}]


def test_normalise_drops_case_punctuation_and_spacing_but_keeps_the_arithmetic():
    assert normalise("  What IS 2+3?\n") == "what is 2 + 3"
    assert normalise("Ｗｈａｔ’s 3×4 —  really?!") == "whats 3 x 4 really"
    assert normalise("a well-known 10-4 split") == "a well known 10 - 4 split"
    assert normalise("What is 2 + 3?") != normalise("What is 2 - 3?")


@pytest.mark.parametrize(
    ("candidate", "rule"),
    [
        (PROBE, "same text"),
        ("  what is 2+3 -- answer with JUST the number!!", "same text"),
        ("What is 2 + 4? Answer with just the number.", "one word apart"),
        ("What is 2 + 3? Answer with only the number.", "one word apart"),
    ],
)
def test_the_guard_catches_a_copy_of_a_probe_however_it_is_dressed(candidate, rule):
    # given a probe and a candidate that is the same prompt or the same template with one value changed
    # when the candidate is checked
    overlaps = find_overlaps([candidate], [PROBE, "Say hello."])
    # then exactly that probe is flagged, and the reason names the rule
    assert [o.protected for o in overlaps] == [PROBE]
    assert overlaps[0].candidate == candidate
    assert rule in overlaps[0].reason


def test_the_guard_catches_a_one_number_change_of_a_short_template():
    overlaps = find_overlaps(["What is 2 + 4?"], ["What is 2 + 3?"])
    assert len(overlaps) == 1
    assert "'4' instead of '3'" in overlaps[0].reason


def test_the_guard_catches_a_one_word_change_in_a_longer_sentence():
    probe = "Which animal is known as man's best friend? Answer in one word."
    overlaps = find_overlaps(["Which animal is known as a cat's best friend? Answer in one word."], [probe])
    assert [o.protected for o in overlaps] == [probe]
    # a change in the middle of a 7-word prompt leaves no shared 5-word run; the one-word rule holds it
    overlaps = find_overlaps(["What is the smallest ocean on Earth?"], ["What is the largest ocean on Earth?"])
    assert len(overlaps) == 1 and "one word apart" in overlaps[0].reason


def test_the_guard_catches_a_probe_phrase_embedded_in_a_different_sentence():
    # given a probe whose long phrase sits inside an otherwise new prompt
    probe = "Which star is at the center of our solar system?"
    candidate = "Tell me a story for children about the star at the center of our solar system and its planets."
    # when checked, then the whole shared run is named
    overlaps = find_overlaps([candidate], [probe])
    assert len(overlaps) == 1
    assert "shares the 7-word phrase 'at the center of our solar system'" in overlaps[0].reason


def test_the_guard_catches_a_near_copy_with_two_words_changed_by_jaccard():
    # given two words swapped at the end and a phrase rule that cannot fire (ngram longer than the text)
    overlaps = find_overlaps(
        ["Tell me the colour of a ripe lemon today"], ["Tell me the colour of a ripe banana please"], ngram=50,
    )
    # then the trigram similarity (5 of 9 shared) catches it
    assert len(overlaps) == 1 and "trigram Jaccard 0.56" in overlaps[0].reason


@pytest.mark.parametrize(
    ("candidate", "probe"),
    [
        ("What is the best way to learn a new language?", "What is the capital of France? Answer in one word."),
        ("Hello! How is your week going so far?", "Say hello."),
        ("Thanks.", "Hi."),
        ("Can you suggest a fun game for a rainy day?", "Can a fish swim? Answer yes or no."),
        ("A baker sells 17 of her 24 rolls. How many are left?", PROBE),
        ("Write a haiku about the sea.", "Write the word cat in capital letters."),
    ],
)
def test_the_guard_leaves_different_prompts_that_share_only_common_words(candidate, probe):
    assert find_overlaps([candidate], [probe]) == []


def test_a_pool_holding_a_probe_is_refused_naming_the_anchor_and_the_file(tmp_path):
    # given a pool file whose second anchor is one of the gate's probes
    probe = load_probes()[0].prompt
    path = _write(tmp_path, [GOOD_ROWS[0], _row(7, probe, "arithmetic"), GOOD_ROWS[1]])
    pool = load_anchor_pool(path)
    # when it is checked against the probes
    with pytest.raises(ValueError) as refused:
        check_no_probe_overlap(pool, [p.prompt for p in load_probes()])
    # then the error names the anchor, the file and the fix
    message = str(refused.value)
    assert f"remove or rewrite anchor arithmetic-007 in {path}" in message
    assert repr(probe) in message
    assert "questions-001" not in message


def test_it_loads_a_minimal_pool_and_hashes_its_bytes(tmp_path):
    path = _write(tmp_path, GOOD_ROWS)
    pool = load_anchor_pool(path)
    assert pool.ids == ("questions-001", "instructions-002", "lists-003")
    assert pool.prompts[2] == "Name three fruits that are rich in vitamin C."
    assert pool.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_it_rejects_a_line_that_is_not_json_naming_the_line(tmp_path):
    path = tmp_path / "anchors.jsonl"
    lines = [json.dumps(r) for r in GOOD_ROWS[:2]] + ['{"id": "lists-003", "category": "lists",']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"anchors.jsonl, line 3: not valid JSON"):
        load_anchor_pool(path)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([GOOD_ROWS[0], {"id": "lists-009", "prompt": "Name three rivers."}],
         r"line 2: expected exactly the keys \['id', 'category', 'prompt'\]"),
        ([GOOD_ROWS[0], GOOD_ROWS[1], {**GOOD_ROWS[2], "id": "questions-001"}],
         "line 3: id 'questions-001' repeats line 1"),
        ([GOOD_ROWS[0], _row(2, "  WHY do leaves change colour in autumn ")],
         "line 2: prompt .* repeats line 1"),
        ([_row(1, "Tell me about the weather in spring.", "trivia")], "line 1: category 'trivia' is not one of"),
        ([_row(1, "   ")], "line 1: 'prompt' must be a non-empty string"),
    ],
)
def test_it_rejects_a_broken_pool_naming_the_line(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        load_anchor_pool(_write(tmp_path, rows))
