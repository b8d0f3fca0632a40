import json
from collections import Counter

import pytest

from workers.engine.contract.probes import PROBE_CATEGORIES, Probe, load_probes
from workers.engine.contract.scoring import score


def test_the_shipped_probes_load_and_cover_every_category():
    probes = load_probes()
    assert 40 <= len(probes) <= 60
    assert len({p.id for p in probes}) == len(probes)
    counts = Counter(p.category for p in probes)
    assert set(counts) == set(PROBE_CATEGORIES)
    assert min(counts.values()) >= 8


def test_each_probe_passes_on_its_ideal_answer():
    # the reference-as-answer must score; otherwise the probe could never count for any base model
    for probe in load_probes():
        ideal = "dog" if probe.scorer == "regex" else probe.reference
        assert score(probe.scorer, ideal, probe.reference, probe.options).passed, probe.id


def test_each_probe_fails_on_an_off_topic_answer():
    for probe in load_probes():
        result = score(probe.scorer, "I am not sure about that.", probe.reference, probe.options)
        assert not result.passed, probe.id


def test_probes_accept_a_chatty_but_correct_answer():
    probes = {p.id: p for p in load_probes()}
    arithmetic, capital = probes["arithmetic-01"], probes["factual-01"]
    assert score(arithmetic.scorer, "2 + 3 = 5", arithmetic.reference, arithmetic.options).passed
    assert score(capital.scorer, "The capital of France is Paris.", capital.reference, capital.options).passed


def test_probe_prompts_are_short_and_become_one_user_message():
    for probe in load_probes():
        assert len(probe.prompt) < 200
        assert probe.messages == [{"role": "user", "content": probe.prompt}]


def _write(tmp_path, rows):
    path = tmp_path / "probes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {"id": "p1", "category": "factual", "prompt": "Capital of France?", "reference": "Paris",
        "scorer": "contains", "options": {}}


def test_it_loads_a_minimal_probe_file(tmp_path):
    assert load_probes(_write(tmp_path, [GOOD])) == [Probe(**GOOD)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scorer": "fuzzy"}, "line 1: unknown scorer kind 'fuzzy'"),
        ({"category": "trivia"}, "line 1: category 'trivia' is not one of"),
        ({"reference": "  "}, "line 1: 'reference' must be a non-empty string"),
        ({"options": {"pattern": "("}}, "line 1: unknown option 'pattern'"),
    ],
)
def test_it_rejects_a_broken_probe_naming_the_line(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        load_probes(_write(tmp_path, [{**GOOD, **change}]))


def test_it_rejects_a_repeated_id(tmp_path):
    with pytest.raises(ValueError, match="line 2: id 'p1' repeats line 1"):
        load_probes(_write(tmp_path, [GOOD, GOOD]))


def test_it_rejects_a_line_that_is_not_json(tmp_path):
    path = tmp_path / "probes.jsonl"
    path.write_text('{"id": "p1",\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: not valid JSON"):
        load_probes(path)
