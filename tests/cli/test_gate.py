"""`accrete gate`: the exit code a CI job branches on — 0 pass, 1 block, 2 anything else — and the
report, as text or as one JSON document."""

import json

import pytest

from tests.fixtures.registry import gate_scores_record

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_version_that_passed_the_gate_exits_0_with_its_report(accrete, skill, make_candidate):
    # given
    version = make_candidate(skill, status="awaiting_approval")
    # when
    ran = accrete("gate", f"v{version.number}", "--wait")
    # then
    assert ran.code == 0, ran.err
    assert ran.out.startswith(f"v{version.number} (policy-codes, legal) against v1: PASS — awaiting approval")
    assert "policy-codes" in ran.out and "0% → 100%" in ran.out and "+100 pts" in ran.out
    assert ran.err == ""


def test_a_blocked_version_exits_1_and_says_why(accrete, skill, make_candidate):
    version = make_candidate(skill, status="blocked")

    ran = accrete("gate", str(version.number), "--wait")

    assert ran.code == 1, ran.err
    assert f"v{version.number} (policy-codes, legal) against v1: BLOCK — blocked" in ran.out
    assert "blocked: policy-codes (the skill being added) did not improve enough" in ran.out


def test_an_unknown_version_exits_2(accrete, skill, base_version):
    ran = accrete("gate", "v99", "--wait")

    assert ran.code == 2
    assert ran.out == ""
    assert "There is nothing here" in ran.err


def test_a_bad_token_exits_2_and_names_accrete_token(accrete, skill, make_candidate):
    version = make_candidate(skill, status="awaiting_approval")

    ran = accrete("gate", str(version.number), token="acc_nothere_notasecret")

    assert ran.code == 2
    assert "Check ACCRETE_TOKEN" in ran.err


def test_no_token_at_all_exits_2_and_names_accrete_token(accrete, base_version):
    ran = accrete("gate", "1", token="")

    assert ran.code == 2
    assert ran.err.startswith("error: ACCRETE_TOKEN is not set")


def test_json_is_one_document_with_the_verdict_and_rows(accrete, skill, make_candidate):
    passed = make_candidate(skill, status="awaiting_approval")

    ran = accrete("gate", str(passed.number), "--json")

    assert ran.code == 0, ran.err
    report = json.loads(ran.out)
    assert (report["version"], report["status"], report["verdict"]) == (passed.number, "awaiting_approval", "pass")
    assert (report["outcome"], report["exit_code"], report["error"]) == ("pass", 0, None)
    assert report["gate"]["candidate"] == passed.number and report["gate"]["baseline"] == 1
    [row] = report["gate"]["rows"]
    assert (row["name"], row["before"], row["after"], row["verdict"]) == ("policy-codes", 0.0, 1.0, "pass")


def test_json_still_parses_when_the_gate_cannot_be_read(accrete, base_version):
    ran = accrete("gate", "42", "--json")

    assert ran.code == 2
    report = json.loads(ran.out)
    assert (report["outcome"], report["exit_code"], report["gate"]) == ("error", 2, None)
    assert "There is nothing here" in report["error"]


def test_without_wait_an_undecided_gate_exits_2(accrete, skill, make_candidate):
    version = make_candidate(skill, status="evaluating")

    ran = accrete("gate", str(version.number))

    assert ran.code == 2
    assert f"v{version.number} is evaluating: its gate has not decided yet" in ran.err


def test_wait_gives_up_after_its_timeout_with_2(accrete, skill, make_candidate):
    version = make_candidate(skill, status="evaluating")

    ran = accrete("gate", str(version.number), "--wait", "--timeout", "0.6", "--interval", "0.2")

    assert ran.code == 2
    assert f"v{version.number} is still evaluating after 0.6 s" in ran.err


def test_wait_follows_the_gate_until_it_decides(accrete_started, server_log, skill, make_candidate):
    from registry.services.gates import gate_evaluate

    # given a gate still scoring, and the CLI that has seen it undecided twice
    version = make_candidate(skill, status="evaluating")
    waiting = accrete_started("gate", str(version.number), "--wait", "--interval", "0.2", "--json")
    server_log.wait_for(f"/api/v1/versions/{version.number}", times=2)
    # when the gate decides while it waits
    with server_log.paused:
        gate_scores_record(version, learned=False)
        assert gate_evaluate(candidate=version).verdict == "block"
    out, err = waiting.communicate(timeout=30)
    # then it saw the decision
    assert waiting.returncode == 1, err
    assert json.loads(out)["status"] == "blocked"
