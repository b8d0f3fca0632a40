"""From a passed gate to production by CLI: `accrete request`, `accrete requests`, `accrete approve` (four
eyes: never the requester), then `accrete production` and its manifest; and `accrete skills`."""

import json

import httpx
import pytest

from registry.models import ModelVersion, PromotionRequest

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_second_skill_owner_approves_and_the_version_is_production(accrete, skill, open_request, live_server,
                                                                     token_of):
    # given dave asked for the promotion of a version that passed the gate
    request = open_request(skill)
    # when bob approves it
    ran = accrete("approve", str(request.pk), "--comment", "looks right", user="bob")
    # then
    number = request.version.number
    assert ran.code == 0, ran.err
    assert ran.out == f"Request {request.pk} approved: v{number} (policy-codes) is now production.\n"
    assert ModelVersion.objects.get(pk=request.version.pk).status == "production"
    shown = accrete("production", "--json", user="vera")
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["number"] == number
    # and the API itself says so
    answer = httpx.get(f"{live_server.url}/api/v1/production", headers={"Authorization": f"Bearer {token_of('vera')}"})
    assert answer.json()["number"] == number


def test_the_requester_cannot_approve_their_own_request(accrete, skill, open_request):
    # given dave asked for it
    request = open_request(skill)
    # when dave approves it himself
    ran = accrete("approve", str(request.pk), user="dave")
    # then
    assert ran.code != 0
    assert "four-eyes" in ran.err and "dave requested the promotion" in ran.err
    assert ModelVersion.objects.get(pk=request.version.pk).status == "awaiting_approval"
    assert PromotionRequest.objects.get(pk=request.pk).status == "open"


def test_reject_closes_the_request_and_keeps_production(accrete, skill, open_request, base_version):
    request = open_request(skill)

    ran = accrete("approve", str(request.pk), "--reject", "--comment", "not yet", user="bob")

    assert ran.code == 0, ran.err
    assert ran.out.startswith(f"Request {request.pk} rejected")
    assert PromotionRequest.objects.get(pk=request.pk).status == "rejected"
    assert ModelVersion.objects.get(status="production") == base_version


def test_a_request_made_by_cli_waits_for_the_other_owner(accrete, skill, make_candidate):
    version = make_candidate(skill)

    asked = accrete("request", f"v{version.number}", "--comment", "ready", user="dave")

    assert asked.code == 0, asked.err
    made = PromotionRequest.objects.get(version=version)
    assert (made.requested_by.username, made.comment, made.status) == ("dave", "ready", "open")
    waiting_for_bob = json.loads(accrete("requests", "--json", user="bob").out)
    waiting_for_dave = json.loads(accrete("requests", "--json", user="dave").out)
    assert [r["id"] for r in waiting_for_bob] == [made.pk]
    assert waiting_for_dave == []


def test_production_prints_the_manifest_with_its_checksums(accrete, base_version):
    # given the base version's files have checksums
    ModelVersion.objects.filter(pk=base_version.pk).update(checksums={"model.safetensors": "ab" * 32})
    # when
    text = accrete("production", user="vera")
    document = accrete("production", "--json", user="vera")
    # then
    assert text.code == 0 and document.code == 0, text.err + document.err
    assert text.out.startswith("Production: v1 (the base model)")
    assert "model.safetensors" in text.out and "ab" * 32 in text.out
    manifest = json.loads(document.out)["manifest"]
    assert manifest["checksums"] == {"model.safetensors": "ab" * 32}
    assert manifest["base_model"]["name"] == "tiny" and manifest["lineage"][0]["number"] == 1


def test_skills_lists_only_my_teams_skills(accrete, skill, hr_skill):
    table = accrete("skills")
    listed = accrete("skills", "--json")

    assert table.code == 0 and listed.code == 0, table.err + listed.err
    assert table.out.split("\n")[1].split() == ["policy-codes", "Policy", "codes", "legal", "active"]
    assert "leave-codes" not in table.out
    assert [s["slug"] for s in json.loads(listed.out)] == ["policy-codes"]
