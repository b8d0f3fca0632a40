"""A candidate the gate blocked cannot reach production by any path: the services, the Django admin's
"promote" action, or `manage.py approve`. (The web UI's path is tested in tests/frontend.)"""

import io

import pytest
from django.contrib.messages import ERROR
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from registry.errors import TransitionError
from registry.models import Approval, ModelVersion, PromotionRequest
from registry.services.approvals import approval_decide, promotion_request_create
from registry.services.gates import gate_evaluate
from registry.services.versions import version_promote
from tests.fixtures.registry import scores_grid
from tests.fixtures.skills import skill_with_cases


@pytest.fixture
def blocked(people, base_version, make_candidate):
    """A candidate of "tagging" that the gate blocked: it broke policy-codes (20/20 → 15/20)."""
    codes = skill_with_cases(people["legal"], "policy-codes")
    tagging = skill_with_cases(people["legal"], "tagging")
    candidate = make_candidate(tagging, status="evaluating")
    scores_grid((codes, tagging), {base_version: (20, 0), candidate: (15, 20)})
    assert gate_evaluate(candidate=candidate).verdict == "block"
    return ModelVersion.objects.get(pk=candidate.pk)


def _unchanged(blocked, base_version, audit_count):
    blocked.refresh_from_db()
    base_version.refresh_from_db()
    assert blocked.status == "blocked" and blocked.promoted_at is None
    assert base_version.status == "production"
    assert ModelVersion.objects.filter(status="production").count() == 1
    assert AuditEvent.objects.count() == audit_count


def test_the_services_refuse_a_blocked_candidate_and_change_nothing(blocked, base_version, people):
    audit_count = AuditEvent.objects.count()
    with pytest.raises(TransitionError, match="is blocked by the gate; only a version awaiting approval"):
        version_promote(version=blocked, actor=people["bob"])
    with pytest.raises(TransitionError, match="only a candidate that passed the gate can be put up for approval"):
        promotion_request_create(version=blocked, actor=people["alice"])
    assert not PromotionRequest.objects.exists()
    _unchanged(blocked, base_version, audit_count)


def test_approval_refuses_a_blocked_candidate_even_with_an_open_request(blocked, base_version, people):
    # given a request row that should never exist (written past the services)
    request = PromotionRequest.objects.create(version=blocked, requested_by=people["alice"])
    audit_count = AuditEvent.objects.count()
    # when bob approves it
    with pytest.raises(TransitionError, match="only a candidate that passed the gate can be approved"):
        approval_decide(request=request, approver=people["bob"], decision="approve")
    # then
    request.refresh_from_db()
    assert request.status == "open" and not Approval.objects.exists()
    _unchanged(blocked, base_version, audit_count)


def _admin_promote(people, version):
    client = Client()
    client.force_login(people["admin"])
    return client.post(reverse("admin:registry_modelversion_changelist"),
                       {"action": "promote", "_selected_action": [version.pk]}, follow=True)


def test_the_admin_promote_action_refuses_a_blocked_candidate(blocked, base_version, people):
    audit_count = AuditEvent.objects.count()
    # when a superuser runs the "promote" action on it
    response = _admin_promote(people, blocked)
    # then an error is shown and nothing moved
    assert response.status_code == 200
    shown = [(m.level, m.message) for m in response.context["messages"]]
    assert shown == [(ERROR, f"Version v{blocked.number} is blocked by the gate; only a version awaiting "
                             "approval (it passed the gate) can be promoted.")]
    assert "is blocked by the gate" in response.content.decode()
    _unchanged(blocked, base_version, audit_count)


def test_there_is_no_credential_less_approve_command(blocked, base_version, people):
    # `manage.py approve --user NAME` acted as any approver without a credential: it is gone. Approvals are
    # a person's, in the browser or through the API with their own token.
    from django.core.management.base import CommandError

    audit_count = AuditEvent.objects.count()
    with pytest.raises(CommandError, match="Unknown command: 'approve'"):
        call_command("approve", f"v{blocked.number}", "--user", "bob", stderr=io.StringIO(), stdout=io.StringIO())
    _unchanged(blocked, base_version, audit_count)


def test_an_admin_can_change_only_the_probe_tolerance_of_a_base_model_and_it_is_audited(people, base_version):
    base = base_version.base_model
    client = Client()
    client.force_login(people["admin"])
    url = reverse("admin:registry_basemodel_change", args=[base.pk])
    # when: the form also carries a new name, which is read-only
    response = client.post(url, {"probe_tolerance": "0.15", "name": "renamed"})
    # then
    assert response.status_code == 302, response.content.decode()[:500]
    base.refresh_from_db()
    assert base.probe_tolerance == 0.15 and base.name == "tiny"
    event = AuditEvent.objects.get(action="base_model.probe_tolerance_changed")
    assert event.actor == people["admin"] and event.data == {"probe_tolerance": 0.15}
    # and out of range is refused with the field named
    response = client.post(url, {"probe_tolerance": "1.5"})
    assert response.status_code == 200 and b"less than or equal to 1" in response.content
