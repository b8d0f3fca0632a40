import pytest

from workers.engine.contract.answer_extraction import extract_choice, extract_numbers
from workers.engine.contract.scoring import SCORER_KINDS, score, validate_options


@pytest.mark.parametrize("module", ["workers.engine.contract.scoring", "workers.engine.contract.probes"])
def test_it_does_not_import_torch_or_django(module):
    # the web process scores and lists probes; it must never pay for (or depend on) torch
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted({{'torch', 'django'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_exact_ignores_extra_whitespace_case_and_surrounding_punctuation():
    result = score("exact", "  abc-12. \n", "ABC-12")
    assert result.passed and result.score == 1.0


def test_exact_explains_a_mismatch_with_both_values():
    result = score("exact", "ABC-13", "ABC-12")
    assert not result.passed
    assert result.detail == "expected 'ABC-12', got 'ABC-13'"


def test_exact_can_be_case_sensitive():
    assert not score("exact", "yes", "YES", {"case_sensitive": True}).passed


def test_contains_finds_the_reference_inside_prose():
    result = score("contains", "The capital of France is   PARIS, of course.", "Paris")
    assert result.passed and result.extracted == "paris"


def test_contains_matches_whole_words_so_4_does_not_pass_on_14():
    assert not score("contains", "The answer is 14", "4").passed
    assert score("contains", "The answer is 14", "4", {"whole_word": False}).passed


def test_contains_says_what_it_looked_for_when_it_fails():
    result = score("contains", "Lyon", "Paris")
    assert not result.passed and "'Paris'" in result.detail and "'Lyon'" in result.detail


def test_regex_uses_the_reference_as_the_pattern_by_default():
    result = score("regex", "Order ABC-12 shipped", r"[A-Z]{3}-\d+")
    assert result.passed and result.extracted == "ABC-12"


def test_regex_with_a_pattern_option_compares_the_captured_group_with_the_reference():
    options = {"pattern": r"order (\w+-\d+)", "ignore_case": True}
    assert score("regex", "Order abc-12 shipped", "ABC-12", options).passed
    failed = score("regex", "Order ABC-13 shipped", "ABC-12", options)
    assert not failed.passed and failed.detail == "expected 'ABC-12', got 'ABC-13'"


def test_validate_options_rejects_a_regex_that_does_not_compile():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        validate_options("regex", {"pattern": "(unclosed"})


def test_json_fields_finds_an_object_wrapped_in_prose_and_fences():
    output = 'Sure! Here is the record:\n```json\n{"name": "Ada", "age": 36, "city": "London"}\n```\nAnything else?'
    result = score("json_fields", output, '{"name": "ada", "age": 36, "city": "London"}')
    assert result.passed and result.score == 1.0


def test_json_fields_skips_braces_that_do_not_parse():
    output = 'Use {placeholders} like this: {"id": 7}'
    assert score("json_fields", output, '{"id": 7}').passed


def test_json_fields_scores_the_fraction_of_equal_fields_and_names_the_wrong_ones():
    result = score("json_fields", '{"a": 1, "b": 2, "c": 3, "d": 0}', '{"a": 1, "b": 2, "c": 4, "d": 5}')
    assert not result.passed
    assert result.score == 0.5
    assert "c: expected 4, got 3" in result.detail and "d: expected 5, got 0" in result.detail


def test_json_fields_compares_only_the_listed_fields():
    result = score("json_fields", '{"a": 1, "b": 99}', '{"a": 1, "b": 2}', {"fields": ["a"]})
    assert result.passed


def test_json_fields_fails_cleanly_when_the_answer_has_no_json():
    result = score("json_fields", "I cannot help with that.", '{"a": 1}')
    assert not result.passed and result.extracted is None and "no JSON object" in result.detail


@pytest.mark.parametrize(
    "answer",
    ["(b)", "B)", "b", "Answer: b", "The answer is B.", "I think the correct option is (B) because", "B. Paris"],
)
def test_multiple_choice_reads_the_letter_in_many_styles(answer):
    assert score("multiple_choice", answer, "B").passed


def test_multiple_choice_does_not_mistake_the_article_a_for_a_choice():
    assert extract_choice("A good question. I pick C") == "C"


def test_multiple_choice_reports_the_wrong_letter():
    result = score("multiple_choice", "The answer is D.", "(b)")
    assert not result.passed and result.detail == "expected 'B', got 'D'"


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("It costs $1,234.50 in total", [1234.5]),
        ("The temperature fell to -12 °C", [-12.0]),
        ("40km and 2.5e3 m", [40.0, 2500.0]),
        ("pages 2-3", [2.0, 3.0]),
        ("seven", [7.0]),
    ],
)
def test_extract_numbers_handles_separators_signs_units_and_ranges(text, numbers):
    assert extract_numbers(text) == numbers


def test_numeric_takes_the_last_number_so_worked_answers_pass():
    assert score("numeric", "2 + 3 = 5", "5").passed
    assert not score("numeric", "2 + 3 = 5", "5", {"position": "first"}).passed


def test_numeric_accepts_thousands_separators_and_units():
    result = score("numeric", "The population is about 1,200,000 people.", "1200000")
    assert result.passed and result.extracted == "1200000"


def test_numeric_applies_absolute_and_relative_tolerance():
    assert score("numeric", "3.14", "3.14159", {"abs_tol": 0.01}).passed
    assert not score("numeric", "3.14", "3.14159").passed
    assert score("numeric", "1010", "1000", {"rel_tol": 0.02}).passed


def test_numeric_says_when_no_number_was_found():
    result = score("numeric", "I do not know", "5")
    assert not result.passed and "found no number" in result.detail


@pytest.mark.parametrize(
    "answer",
    [
        'search({"q": "weather in Paris", "limit": 3})',
        'I will call the tool: search( {"limit": 3, "q": "Weather in Paris"} )',
        '{"tool": "search", "arguments": {"q": "weather in Paris", "limit": 3}}',
        '```json\n{"name": "search", "parameters": {"q": "weather in Paris", "limit": 3}}\n```',
        '{"function": {"name": "search", "arguments": "{\\"q\\": \\"weather in Paris\\", \\"limit\\": 3}"}}',
        'Thought: I need the weather.\nAction: search\nAction Input: {"q": "weather in Paris", "limit": 3}',
    ],
)
def test_tool_call_reads_each_common_call_format(answer):
    reference = 'search({"q": "weather in Paris", "limit": 3})'
    assert score("tool_call", answer, reference).passed


def test_tool_call_gives_half_credit_for_the_right_tool_with_wrong_arguments():
    result = score("tool_call", 'search({"q": "rain", "limit": 3})', 'search({"q": "sun", "limit": 3})')
    assert not result.passed
    assert result.score == 0.75
    assert 'q: expected "sun", got "rain"' in result.detail


def test_tool_call_fails_on_the_wrong_tool():
    result = score("tool_call", 'lookup({"q": "sun"})', 'search({"q": "sun"})')
    assert not result.passed and result.score == 0.0 and "expected tool 'search'" in result.detail


def test_tool_call_can_allow_extra_arguments():
    answer, reference = 'search({"q": "sun", "lang": "en"})', 'search({"q": "sun"})'
    assert not score("tool_call", answer, reference).passed
    assert score("tool_call", answer, reference, {"allow_extra_args": True}).passed


def test_token_f1_gives_partial_credit_for_partial_overlap():
    # prediction: {eiffel, tower, paris} vs reference {eiffel, tower}: P=2/3, R=1 -> F1=0.8
    result = score("token_f1", "The Eiffel Tower, Paris", "the Eiffel tower")
    assert result.score == pytest.approx(0.8)
    assert result.passed


def test_token_f1_fails_below_the_threshold():
    result = score("token_f1", "blue whale", "the largest animal is the blue whale", {"threshold": 0.8})
    assert not result.passed and "< threshold 0.80" in result.detail


def test_rouge_l_rewards_words_in_the_same_order():
    in_order = score("rouge_l", "the cat sat on the mat", "the cat sat on a mat")
    shuffled = score("rouge_l", "mat the on sat cat the", "the cat sat on a mat")
    assert in_order.passed and in_order.score > shuffled.score


def test_an_unknown_kind_lists_the_valid_kinds():
    with pytest.raises(ValueError, match="valid kinds: exact, contains, regex"):
        score("fuzzy", "a", "a")


def test_validate_options_rejects_unknown_and_mistyped_options():
    with pytest.raises(ValueError, match="unknown option 'tolerance'.*valid options: abs_tol, rel_tol"):
        validate_options("numeric", {"tolerance": 0.1})
    with pytest.raises(ValueError, match="'threshold' must be between 0 and 1"):
        validate_options("token_f1", {"threshold": 1.5})
    with pytest.raises(ValueError, match="must be int or float"):
        validate_options("numeric", {"abs_tol": True})


def test_every_kind_has_a_one_line_description_for_the_ui():
    names = [name for name, _ in SCORER_KINDS]
    assert len(names) == len(set(names)) == 9
    assert all(description and "\n" not in description for _, description in SCORER_KINDS)
    for name in names:
        validate_options(name, None)
