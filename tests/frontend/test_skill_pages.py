"""A skill's page for its owners: edit its rules (a loosening waits for another owner's Approve), decide on
a pending change, archive and reactivate it — and everyone else sees no such buttons and gets no such power."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from skills.models import Skill, SkillChange
from tests.fixtures.skills import skill_with_cases


@pytest.fixture
def codes(people):
    """Legal's "policy-codes": a 5% tolerance, a 10% minimum gain."""
    return skill_with_cases(people["legal"], "policy-codes", name="Policy codes", tolerance=0.05, min_gain=0.1,
                            cases=5)


def edit_form(**overrides) -> dict:
    return {"description": "", "scorer": "exact", "scorer_options": "", "tolerance": "0.05", "min_gain": "0.1",
            "comment": "", **overrides}


def test_an_owner_sees_edit_and_archive_and_a_contributor_does_not(login, codes):
    owner = login("bob").get(reverse("skill_detail", args=[codes.pk])).content.decode()
    contributor = login("alice").get(reverse("skill_detail", args=[codes.pk])).content.decode()

    assert reverse("skill_edit", args=[codes.pk]) in owner and reverse("skill_archive", args=[codes.pk]) in owner
    assert reverse("skill_edit", args=[codes.pk]) not in contributor
    assert reverse("skill_archive", args=[codes.pk]) not in contributor


def test_the_edit_form_is_only_for_skill_owners(login, codes):
    assert login("bob").get(reverse("skill_edit", args=[codes.pk])).status_code == 200
    assert login("alice").get(reverse("skill_edit", args=[codes.pk])).status_code == 403
    assert login("alice").post(reverse("skill_edit", args=[codes.pk]), edit_form(tolerance="0.01")).status_code == 403
    assert login("carol").get(reverse("skill_edit", args=[codes.pk])).status_code == 404
    codes.refresh_from_db()
    assert codes.tolerance == 0.05


def test_tightening_from_the_form_applies_at_once(login, codes):
    response = login("bob").post(reverse("skill_edit", args=[codes.pk]),
                                 edit_form(tolerance="0.02", description="Tighter."), follow=True)

    codes.refresh_from_db()
    assert (codes.tolerance, codes.description) == (0.02, "Tighter.")
    assert "Changed description, tolerance 5% → 2%." in response.content.decode()


def test_a_loosening_waits_on_the_page_and_another_owner_approves_it(login, codes):
    # given bob asks for a larger tolerance
    bob, dave = login("bob"), login("dave")
    asked = bob.post(reverse("skill_edit", args=[codes.pk]), edit_form(tolerance="0.2", comment="paraphrases"),
                     follow=True)
    change = SkillChange.objects.get(skill=codes)
    decide = reverse("skill_change_decide", args=[change.pk])
    assert "Waiting for another skill owner&#x27;s approval: tolerance 5% → 20%." in asked.content.decode()
    # then bob's page offers him only to withdraw it, and dave's to approve it
    bobs_page = bob.get(reverse("skill_detail", args=[codes.pk])).content.decode()
    daves_page = dave.get(reverse("skill_detail", args=[codes.pk])).content.decode()
    assert decide in bobs_page and 'value="approve"' not in bobs_page and "Withdraw" in bobs_page
    assert 'value="approve"' in daves_page and "paraphrases" in daves_page
    # when bob tries to approve it anyway, then dave does
    refused = bob.post(decide, {"decision": "approve"})
    codes.refresh_from_db()
    assert refused.status_code == 403 and "four-eyes" in refused.content.decode() and codes.tolerance == 0.05
    approved = dave.post(decide, {"decision": "approve", "comment": "fine"})
    # then it applies
    codes.refresh_from_db()
    assert approved.status_code == 302 and codes.tolerance == 0.2
    assert AuditEvent.objects.filter(action="skill.change_approved", actor_label="dave").exists()


def test_another_team_cannot_decide_on_a_change(login, codes, people):
    from skills.services import skill_update

    change = skill_update(skill=codes, actor=people["bob"], min_gain=0.0).pending

    response = login("carol").post(reverse("skill_change_decide", args=[change.pk]), {"decision": "approve"})

    assert response.status_code == 404 and SkillChange.objects.get(pk=change.pk).status == "pending"


def test_archive_and_reactivate_from_the_page(login, codes):
    bob = login("bob")

    archived = bob.post(reverse("skill_archive", args=[codes.pk]), follow=True)

    assert Skill.objects.get(pk=codes.pk).status == "archived"
    page = archived.content.decode()
    assert "This skill is archived" in page and reverse("skill_reactivate", args=[codes.pk]) in page
    assert bob.post(reverse("skill_archive", args=[codes.pk])).status_code == 409

    bob.post(reverse("skill_reactivate", args=[codes.pk]))

    assert Skill.objects.get(pk=codes.pk).status == "active"


def test_a_contributor_cannot_archive_from_the_browser(login, codes):
    response = login("alice").post(reverse("skill_archive", args=[codes.pk]))

    assert response.status_code == 403 and Skill.objects.get(pk=codes.pk).status == "active"


@pytest.mark.parametrize(("field", "value"), [
    ("tolerance", "nan"), ("tolerance", "1e400"), ("tolerance", "9" * 5000), ("min_gain", "-inf"),
    ("tolerance", "\x00"), ("scorer", "../exact"), ("scorer_options", "[" * 3000),
    ("scorer_options", '{"case_sensitive": NaN}'), ("scorer_options", '{"\\ud800": true}'),
    ("description", "x" * 6000), ("comment", "\x00"),
])
def test_hostile_edit_fields_are_refused_on_the_field(login, codes, field, value):
    response = login("bob").post(reverse("skill_edit", args=[codes.pk]), edit_form(**{field: value}))

    assert response.status_code == 400 and field in response.context["form"].errors
    codes.refresh_from_db()
    assert (codes.tolerance, codes.min_gain, codes.scorer_options) == (0.05, 0.1, {})
    assert not SkillChange.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="skill.").exists()


@pytest.mark.parametrize("decision", ["", "approve ", "APPROVE", "\x00", "9" * 5000])
def test_a_hostile_decision_is_refused(login, codes, people, decision):
    from skills.services import skill_update

    change = skill_update(skill=codes, actor=people["bob"], tolerance=0.5).pending

    response = login("dave").post(reverse("skill_change_decide", args=[change.pk]), {"decision": decision})

    assert response.status_code == 400 and SkillChange.objects.get(pk=change.pk).status == "pending"
