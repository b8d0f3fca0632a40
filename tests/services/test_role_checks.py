"""Every service that acts for a person checks that person's role itself (the views no longer do): vera, a
viewer in Legal, is refused by each, with the role named, and nothing changes."""

import json

import pytest

from audit.models import AuditEvent
from teams.permissions import RoleRequired


@pytest.fixture
def upload_file(tmp_path):
    path = tmp_path / "codes.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Code for request {i}?", "demonstration": f"C-{i}"}) + "\n"
                            for i in range(30)))
    return path


def _calls(people, skill, make_candidate, upload_file):
    from registry.services.approvals import approval_decide, promotion_request_create
    from skills.services import (
        demonstration_set_preview,
        demonstration_set_save,
        readiness_request,
        skill_create,
    )
    from training.models import TrainingJob
    from training.services import job_cancel_request, job_request

    dset = skill.demonstration_sets.first()
    validated = demonstration_set_preview(skill=skill, path=upload_file, filename="codes.jsonl",
                                          actor=people["alice"]).validated
    queued = TrainingJob.objects.create(skill=skill, demonstration_set=dset, status="queued")
    candidate = make_candidate(skill)
    request = promotion_request_create(version=make_candidate(skill), actor=people["dave"])
    vera = people["vera"]
    return {
        "create skills": lambda: skill_create(team=people["legal"], slug="new-skill", name="New", actor=vera),
        "preview an upload": lambda: demonstration_set_preview(skill=skill, path=upload_file, filename="codes.jsonl",
                                                               actor=vera),
        "save an upload": lambda: demonstration_set_save(skill=skill, validated=validated, path=upload_file,
                                                         actor=vera),
        "run a readiness check": lambda: readiness_request(demonstration_set=dset, actor=vera),
        "train": lambda: job_request(skill=skill, demonstration_set=dset, method="sdft", config={}, actor=vera),
        "cancel a job": lambda: job_cancel_request(job=queued, actor=vera),
        "ask for a promotion": lambda: promotion_request_create(version=candidate, actor=vera),
        "approve": lambda: approval_decide(request=request, approver=vera, decision="approve"),
    }


@pytest.mark.parametrize(("action", "role"), [
    ("create skills", "Skill owner"), ("preview an upload", "Contributor"), ("save an upload", "Contributor"),
    ("run a readiness check", "Contributor"), ("train", "Contributor"), ("cancel a job", "Contributor"),
    ("ask for a promotion", "Contributor"), ("approve", "Skill owner"),
])
def test_a_viewer_is_refused_by_the_service_itself(people, skill, make_candidate, upload_file, fake_tasks, action,
                                                   role):
    call = _calls(people, skill, make_candidate, upload_file)[action]
    events_before = AuditEvent.objects.count()

    with pytest.raises(RoleRequired, match=f"vera may not .* it needs the {role} role"):
        call()

    assert AuditEvent.objects.count() == events_before and fake_tasks.calls == []
