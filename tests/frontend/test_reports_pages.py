"""The matrix page and a version's gate report show the numbers `manage.py gate` and the demo print: one
selector, one formatter of scores, for the page and for the terminal."""

import re

import pytest
from django.urls import reverse

from registry.reports import gate_table, matrix_table
from registry.selectors import forgetting_matrix


@pytest.fixture
def blocked(blocked_lineage):
    return blocked_lineage[-1]


def test_the_matrix_page_and_the_text_matrix_show_the_same_deltas_of_a_blocked_candidate(login, blocked):
    # when
    page = login("vera").get(reverse("matrix")).content.decode()
    text = next(line for line in matrix_table(forgetting_matrix()).splitlines() if line.startswith(blocked.label))
    # then
    row = next(r for r in page.split("<tr>") if f"<strong>{blocked.label}</strong>" in r)
    page_cells = list(zip(re.findall(r'class="heat-score">([^<]+)<', row),
                          re.findall(r'class="small delta-(?:up|down|zero)">([^<]+)<', row), strict=True))
    text_cells = re.findall(r"(\d+%) \(([^)]+)\)", text)
    assert page_cells == text_cells == [("25%", "-75 pts"), ("100%", "+100 pts")]


def test_the_version_page_and_the_gate_table_show_the_same_rows(login, blocked):
    # when
    page = login("vera").get(reverse("version_detail", args=[blocked.pk])).content.decode()
    text = gate_table(blocked.gate)
    # then
    table = page.split('data-testid="gate-rows"')[1].split("</table>")[0]
    page_deltas = re.findall(r'<td class="delta-(?:up|down|zero)">([^<]+)<', table)
    text_deltas = re.findall(r"^\S+ +\d+% +\d+% +(\S+ pts|±0) ", text, re.MULTILINE)
    assert page_deltas == text_deltas == ["-75 pts", "+100 pts"]
    assert "policy-codes dropped from 100% to 25% (tolerance 10%)" in page
    assert "blocked: policy-codes dropped from 100% to 25% (tolerance 10%)" in text
