"""`manage.py gate` on real gated candidates of the tiny model (approving is a person's: the browser or the API)."""

import io
import json

import pytest
from django.core.management import call_command

from registry.models import Approval, GateResult, ModelVersion
from registry.reports import gate_table


def _gate(*args) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("gate", *args, stdout=out)
    except SystemExit as exit_:
        return exit_.code, out.getvalue()
    return 0, out.getvalue()


def test_gate_exits_0_on_the_clean_candidate_and_1_on_the_damaged_one(gate_lineage):
    # when the command gates each (neither was gated before)
    clean_code, clean_out = _gate(str(gate_lineage.clean.number))
    damaged_code, damaged_out = _gate(f"v{gate_lineage.damaged.number}")
    # then
    assert clean_code == 0, clean_out
    assert clean_out.startswith(f"Gate for v{gate_lineage.clean.number} against v1: PASS")
    assert damaged_code == 1, damaged_out
    assert f"v{gate_lineage.damaged.number} against v1: BLOCK" in damaged_out
    assert "blocked: echo dropped from 100% to" in damaged_out
    assert "case(s) flipped pass→fail" in damaged_out and "[echo eval (explicit eval file)]" in damaged_out
    assert ModelVersion.objects.get(pk=gate_lineage.damaged.pk).status == "blocked"


def test_gate_shows_an_existing_verdict_with_the_same_exit_code(gate_lineage, monkeypatch):
    _gate(str(gate_lineage.damaged.number))
    # the second call must not score anything
    monkeypatch.setattr("workers.pipeline.run_candidate_gate", lambda version_id: pytest.fail("gated twice"))
    code, out = _gate(str(gate_lineage.damaged.number))
    assert code == 1 and "BLOCK" in out
    # the one plain-text gate table, which the demo prints too
    assert out == gate_table(GateResult.objects.get(candidate=gate_lineage.damaged)) + "\n"


def test_gate_json_prints_the_verdict_rows_and_flipped_cases(gate_lineage, gate_models):
    # when
    code, out = _gate(str(gate_lineage.damaged.number), "--json")
    # then
    assert code == 1
    report = json.loads(out)
    assert (report["candidate"], report["baseline"]) == (gate_lineage.damaged.number, 1)
    assert (report["verdict"], report["status"]) == ("block", "blocked")
    assert [row["name"] for row in report["rows"]] == ["echo", "tagging", "retention probes"]
    assert any(reason.startswith("echo dropped") for reason in report["reasons"])
    drops = [f for f in report["flipped"] if f["direction"] == "pass→fail"]
    assert drops and all(f["expected"] in gate_models.echo_references for f in drops)
    assert set(drops[0]) == {"suite", "suite_id", "case", "direction", "prompt", "expected", "old_output", "new_output",
                            "detail"}


def test_gate_refuses_an_unknown_version(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No version 'v99'"):
        call_command("gate", "v99")


def test_a_candidate_the_gate_blocked_cannot_be_put_up_for_approval_through_the_api(gate_lineage, people):
    from django.test import Client

    from tokens.services import token_create

    _gate(str(gate_lineage.damaged.number))
    token = token_create(user=people["alice"], name="ci", actor=people["alice"]).secret
    # when alice, a contributor of the team, asks for its promotion with her token
    response = Client().post(f"/api/v1/versions/{gate_lineage.damaged.number}/promotion-requests", {},
                             content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    # then
    assert response.status_code == 409, response.content
    assert response.json()["detail"].startswith(f"v{gate_lineage.damaged.number} is blocked by the gate")
    assert ModelVersion.objects.get(pk=gate_lineage.damaged.pk).status == "blocked"
    assert ModelVersion.objects.get(status="production") == gate_lineage.parent
    assert not Approval.objects.exists()
