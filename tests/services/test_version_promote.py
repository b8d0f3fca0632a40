import threading

import pytest
from django.db import IntegrityError, connection, transaction

from audit.models import AuditEvent
from registry.errors import SelfApprovalError, TransitionError
from registry.models import Approval, ModelVersion, PromotionRequest
from registry.services.approvals import approval_decide, promotion_request_create
from registry.services.gates import gate_evaluate, gate_start
from registry.services.versions import version_promote, version_rollback
from tests.fixtures.backends import ON_POSTGRES
from tests.fixtures.registry import gate_scores_record, promote


def test_an_approved_candidate_becomes_the_only_production_version(skill, make_candidate, base_version, people):
    # given
    candidate = make_candidate(skill)
    request = promotion_request_create(version=candidate, actor=people["alice"])
    # when
    approval_decide(request=request, approver=people["bob"], decision="approve", comment="looks good")
    # then
    candidate.refresh_from_db()
    base_version.refresh_from_db()
    assert candidate.status == "production" and candidate.promoted_by == people["bob"]
    assert base_version.status == "retired"
    assert ModelVersion.objects.filter(status="production").count() == 1


def test_it_refuses_self_approval(skill, make_candidate, people):
    # given: bob, a skill owner, asked for the promotion himself
    candidate = make_candidate(skill, requested_by=people["bob"])
    request = promotion_request_create(version=candidate, actor=people["bob"])
    # when / then
    with pytest.raises(SelfApprovalError, match="four-eyes"):
        approval_decide(request=request, approver=people["bob"], decision="approve")
    candidate.refresh_from_db()
    assert candidate.status == "awaiting_approval"
    assert not Approval.objects.exists()


def test_the_database_itself_refuses_an_approval_by_the_requester(skill, make_candidate, people):
    candidate = make_candidate(skill)
    request = promotion_request_create(version=candidate, actor=people["alice"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Approval.objects.create(request=request, requester=people["alice"], approver=people["alice"], decision="approve")


def test_the_database_refuses_a_second_production_version(skill, make_candidate):
    candidate = make_candidate(skill)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=candidate.pk).update(status="production")


def test_a_viewer_cannot_approve(skill, make_candidate, people):
    candidate = make_candidate(skill)
    request = promotion_request_create(version=candidate, actor=people["alice"])
    with pytest.raises(Exception, match="Skill owner role"):
        approval_decide(request=request, approver=people["vera"], decision="approve")


def test_promoting_a_blocked_version_raises_and_changes_nothing(skill, make_candidate, base_version):
    # given
    blocked = make_candidate(skill, status="blocked")
    events_before = AuditEvent.objects.count()
    # when
    with pytest.raises(TransitionError, match="only a version awaiting approval"):
        version_promote(version=blocked)
    # then
    blocked.refresh_from_db()
    base_version.refresh_from_db()
    assert blocked.status == "blocked" and base_version.status == "production"
    assert AuditEvent.objects.count() == events_before


def test_a_blocked_version_cannot_be_put_up_for_approval(skill, make_candidate, people):
    blocked = make_candidate(skill, status="blocked")
    with pytest.raises(TransitionError, match="passed the gate"):
        promotion_request_create(version=blocked, actor=people["alice"])
    assert not PromotionRequest.objects.exists()


def test_every_move_leaves_an_audit_event_naming_its_actor(skill, make_candidate, people):
    # given a candidate a worker is about to gate
    candidate = make_candidate(skill, status="candidate")
    moves = [
        ("evaluating", lambda: gate_start(version=candidate, actor=people["bob"])),
        ("awaiting_approval", lambda: (gate_scores_record(candidate, learned=True),
                                       gate_evaluate(candidate=candidate, actor=people["bob"]))),
        ("production", lambda: promote(candidate, requester=people["alice"], approver=people["bob"])),
    ]
    for to, move in moves:
        # when
        move()
        # then
        event = AuditEvent.objects.filter(action=f"version.{to}", object_id=str(candidate.pk)).get()
        assert event.actor == people["bob"] and event.data["to"] == to


def test_promoting_a_candidate_names_its_state(skill, make_candidate):
    candidate = make_candidate(skill, status="candidate")
    with pytest.raises(TransitionError, match="v\\d+ is candidate; only a version awaiting approval"):
        version_promote(version=candidate)
    candidate.refresh_from_db()
    assert candidate.status == "candidate"


def test_the_audit_log_is_append_only(skill, make_candidate):
    make_candidate(skill)
    event = AuditEvent.objects.first()
    event.action = "tampered"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.update(action="x")


def test_a_sibling_candidate_goes_stale_when_production_moves(skill, make_candidate, people):
    first, second = make_candidate(skill), make_candidate(skill)
    request = promotion_request_create(version=first, actor=people["alice"])
    approval_decide(request=request, approver=people["bob"], decision="approve")
    second.refresh_from_db()
    assert second.status == "stale"
    with pytest.raises(TransitionError):
        version_promote(version=second)


def test_an_admin_can_roll_production_back(skill, make_candidate, base_version, people):
    candidate = make_candidate(skill)
    approval_decide(request=promotion_request_create(version=candidate, actor=people["alice"]),
                    approver=people["bob"], decision="approve")
    with pytest.raises(TransitionError, match="platform admin"):
        version_rollback(version=base_version, actor=people["bob"])
    version_rollback(version=base_version, actor=people["admin"])
    base_version.refresh_from_db()
    candidate.refresh_from_db()
    assert (base_version.status, candidate.status) == ("production", "retired")
    assert AuditEvent.objects.filter(action="version.production", data__rollback=True).exists()


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent promotion needs PostgreSQL (SQLite serialises writers)")
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_approvals_leave_exactly_one_production_version(skill, make_candidate, people):
    # given two candidates from the same production version, both asked for by alice, approved at the same
    # moment by bob and by dave
    candidates = [make_candidate(skill), make_candidate(skill)]
    requests = [promotion_request_create(version=c, actor=people["alice"]) for c in candidates]
    barrier = threading.Barrier(2)
    outcomes = []

    def approve(request, approver):
        try:
            barrier.wait()
            approval_decide(request=request, approver=approver, decision="approve")
            outcomes.append("promoted")
        except (TransitionError, IntegrityError) as exc:
            outcomes.append(type(exc).__name__)
        finally:
            connection.close()

    # when
    approvers = (people["bob"], people["dave"])
    threads = [threading.Thread(target=approve, args=pair) for pair in zip(requests, approvers, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert sorted(outcomes) == ["TransitionError", "promoted"]
    assert ModelVersion.objects.filter(status="production").count() == 1
    assert ModelVersion.objects.filter(pk__in=[c.pk for c in candidates], status="stale").count() == 1
    # and the loser's request is closed with the reason, not left open in an inbox
    assert PromotionRequest.objects.filter(status="closed", closed_reason__contains="but production is now").count() == 1
