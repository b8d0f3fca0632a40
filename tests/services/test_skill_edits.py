"""Editing a skill's rules: what tightens the gate applies at once, what could loosen it waits for a second
skill owner (never the one who asked), every change is an audit event with before and after; archiving takes
a skill out of the gate and reactivating brings it back."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit.models import AuditEvent
from skills.models import Skill, SkillChange
from skills.services import (
    SelfApprovalRefused,
    SkillEditRefused,
    skill_archive,
    skill_change_decide,
    skill_reactivate,
    skill_update,
)
from teams.permissions import RoleRequired
from tests.fixtures.skills import skill_with_cases


@pytest.fixture
def strict_skill(people):
    """Legal's "policy-codes": a 5% tolerance, a 10% minimum gain."""
    return skill_with_cases(people["legal"], "policy-codes", tolerance=0.05, min_gain=0.1, cases=5)


def skill_events() -> list[tuple[str, str]]:
    """(action, actor) of each audit event about skills, oldest first (other events, e.g. the fixtures' role
    grants, are not this file's business)."""
    return list(AuditEvent.objects.filter(action__startswith="skill.").order_by("pk")
                .values_list("action", "actor_label"))


def rules(skill) -> tuple:
    skill.refresh_from_db()
    return skill.tolerance, skill.min_gain, skill.scorer, skill.scorer_options, skill.description


def test_tightening_applies_at_once_with_an_audit_event(strict_skill, people):
    update = skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.02, min_gain=0.2,
                          description="Policy codes, v2.")

    assert update.pending is None
    assert rules(strict_skill) == (0.02, 0.2, "exact", {}, "Policy codes, v2.")
    event = AuditEvent.objects.get(action="skill.updated")
    assert event.actor_label == "bob" and event.team == people["legal"]
    assert event.data["changes"]["tolerance"] == {"before": 0.05, "after": 0.02}
    assert event.data["changes"]["min_gain"] == {"before": 0.1, "after": 0.2}


@pytest.mark.parametrize("loosening", [{"tolerance": 0.1}, {"min_gain": 0.0}, {"scorer": "contains"},
                                       {"scorer_options": {"case_sensitive": True}}],
                         ids=["larger tolerance", "smaller min gain", "another scorer", "other scorer options"])
def test_loosening_waits_for_another_skill_owner(strict_skill, people, loosening):
    update = skill_update(skill=strict_skill, actor=people["bob"], comment="too strict for paraphrases", **loosening)

    assert update.applied == {} and update.pending.status == "pending"
    assert rules(strict_skill) == (0.05, 0.1, "exact", {}, "")
    assert AuditEvent.objects.filter(action="skill.change_requested", actor_label="bob").count() == 1

    skill_change_decide(change=update.pending, actor=people["dave"], decision="approve")

    tolerance, min_gain, scorer, options, _ = rules(strict_skill)
    expected = {"tolerance": 0.05, "min_gain": 0.1, "scorer": "exact", "scorer_options": {}, **loosening}
    assert (tolerance, min_gain, scorer, options) == tuple(expected[k] for k in ("tolerance", "min_gain", "scorer",
                                                                                  "scorer_options"))
    event = AuditEvent.objects.get(action="skill.change_approved")
    assert event.actor_label == "dave" and event.data["requested_by"] == people["bob"].pk


def test_a_mixed_edit_applies_the_tightening_and_holds_the_loosening(strict_skill, people):
    update = skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.2, min_gain=0.3)

    assert set(update.applied) == {"min_gain"} and set(update.pending.fields) == {"tolerance"}
    assert rules(strict_skill)[:2] == (0.05, 0.3)


def test_the_requester_cannot_approve_their_own_loosening(strict_skill, people):
    change = skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.5).pending

    with pytest.raises(SelfApprovalRefused, match=r"bob asked for this change .*\(four-eyes rule\)"):
        skill_change_decide(change=change, actor=people["bob"], decision="approve")

    assert rules(strict_skill)[0] == 0.05
    assert SkillChange.objects.get(pk=change.pk).status == "pending"


def test_the_database_itself_refuses_a_self_approved_change(strict_skill, people):
    change = skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.5).pending

    with pytest.raises(IntegrityError), transaction.atomic():
        SkillChange.objects.filter(pk=change.pk).update(status="approved", decided_by=people["bob"])


def test_a_contributor_cannot_approve_and_a_viewer_cannot_edit(strict_skill, people):
    change = skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.5).pending

    with pytest.raises(RoleRequired, match="alice may not .* Skill owner"):
        skill_change_decide(change=change, actor=people["alice"], decision="approve")
    with pytest.raises(RoleRequired, match="vera may not"):
        skill_update(skill=strict_skill, actor=people["vera"], description="x")
    with pytest.raises(RoleRequired, match="carol may not"):  # a skill owner of another team
        skill_change_decide(change=change, actor=people["carol"], decision="approve")

    assert rules(strict_skill)[0] == 0.05


def test_a_rejected_loosening_changes_nothing_and_the_requester_may_withdraw(strict_skill, people):
    first = skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.5).pending
    skill_change_decide(change=first, actor=people["dave"], decision="reject", comment="no")
    second = skill_update(skill=strict_skill, actor=people["bob"], min_gain=0.0).pending
    skill_change_decide(change=second, actor=people["bob"], decision="reject")

    assert rules(strict_skill)[:2] == (0.05, 0.1)
    assert list(SkillChange.objects.order_by("pk").values_list("status", "decided_by__username")) == [
        ("rejected", "dave"), ("rejected", "bob")]


def test_one_loosening_waits_at_a_time(strict_skill, people):
    skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.5)

    with pytest.raises(SkillEditRefused, match="asked for by bob is waiting for approval"):
        skill_update(skill=strict_skill, actor=people["dave"], min_gain=0.0)

    assert SkillChange.objects.count() == 1 and rules(strict_skill)[1] == 0.1


def test_a_change_is_decided_once(strict_skill, people):
    change = skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.5).pending
    skill_change_decide(change=change, actor=people["dave"], decision="reject")

    with pytest.raises(SkillEditRefused, match="already rejected"):
        skill_change_decide(change=change, actor=people["dave"], decision="approve")

    assert rules(strict_skill)[0] == 0.05


def test_an_approval_refuses_a_change_asked_against_rules_that_moved(strict_skill, people):
    change = skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.5).pending
    skill_update(skill=strict_skill, actor=people["dave"], tolerance=0.01)  # tightened meanwhile

    with pytest.raises(SkillEditRefused, match="tolerance changed since this was asked for"):
        skill_change_decide(change=change, actor=people["dave"], decision="approve")

    assert rules(strict_skill)[0] == 0.01 and SkillChange.objects.get(pk=change.pk).status == "pending"


@pytest.mark.parametrize(("edit", "error"), [
    ({"tolerance": 1.5}, ValidationError), ({"min_gain": -0.1}, ValidationError),
    ({"scorer": "nonsense"}, ValueError), ({"scorer_options": {"threshold": 2}}, ValueError),
    ({"scorer": "token_f1", "scorer_options": {"threshold": float("nan")}}, ValueError),
])
def test_a_value_out_of_range_is_refused_and_nothing_changes(strict_skill, people, edit, error):
    with pytest.raises(error):
        skill_update(skill=strict_skill, actor=people["bob"], **edit)

    assert rules(strict_skill) == (0.05, 0.1, "exact", {}, "")
    assert not SkillChange.objects.exists() and skill_events() == []


def test_nothing_to_change_leaves_no_trace(strict_skill, people):
    update = skill_update(skill=strict_skill, actor=people["bob"], tolerance=0.05, description="")

    assert update.applied == {} and update.pending is None and skill_events() == []


def test_archiving_takes_a_skill_out_of_the_gate_and_reactivating_brings_it_back(strict_skill, people):
    skill_archive(skill=strict_skill, actor=people["bob"])

    assert Skill.objects.get(pk=strict_skill.pk).status == "archived"
    assert not Skill.objects.filter(status=Skill.Status.ACTIVE, pk=strict_skill.pk).exists()  # the gate's query
    with pytest.raises(SkillEditRefused, match="policy-codes is archived: only an active skill can be archived"):
        skill_archive(skill=strict_skill, actor=people["dave"])

    skill_reactivate(skill=strict_skill, actor=people["dave"])

    assert Skill.objects.get(pk=strict_skill.pk).status == "active"
    assert skill_events() == [("skill.archived", "bob"), ("skill.reactivated", "dave")]


def test_a_contributor_cannot_archive(strict_skill, people):
    with pytest.raises(RoleRequired, match="alice may not change the skill policy-codes"):
        skill_archive(skill=strict_skill, actor=people["alice"])

    assert Skill.objects.get(pk=strict_skill.pk).status == "active"
