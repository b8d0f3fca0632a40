"""Who may see and do what changes on the record: a role granted, changed or revoked, a skill moved to
another team, a user deactivated — from the admin (with the admin as actor), a shell or a service."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


@pytest.fixture
def admin_client(login):
    return login("admin")


def test_granting_a_role_in_the_admin_is_audited_with_the_admin_as_actor(people, admin_client, django_user_model):
    newcomer = django_user_model.objects.create_user(username="erin", password="pw-erin")

    response = admin_client.post(reverse("admin:teams_membership_add"), {
        "user": newcomer.pk, "team": people["legal"].pk, "role": "platform_admin"})

    assert response.status_code == 302
    [event] = [e for e in events("role.granted") if e.data["user"] == "erin"]
    assert event.actor == people["admin"] and event.actor_label == "admin"
    assert event.team == people["legal"]
    assert event.data == {"user": "erin", "team": "legal", "role": "platform_admin"}


def test_changing_and_revoking_a_role_from_a_shell_is_audited_as_the_system(people):
    from teams.models import Membership, Role

    membership = Membership.objects.get(user=people["vera"])
    membership.role = Role.SKILL_OWNER
    membership.save()
    membership.delete()

    [changed] = events("role.changed")
    assert changed.actor is None and changed.actor_label == "system"
    assert changed.data["from_role"] == "viewer" and changed.data["role"] == "skill_owner"
    [revoked] = events("role.revoked")
    assert revoked.data == {"user": "vera", "team": "legal", "role": "skill_owner"}
    assert revoked.team == people["legal"]


def test_a_bulk_update_of_roles_is_audited_row_by_row(people):
    from teams.models import Membership, Role

    count = Membership.objects.filter(team=people["legal"], role=Role.SKILL_OWNER).update(role=Role.VIEWER)

    assert count == 2
    assert sorted(e.data["user"] for e in events("role.changed")) == ["bob", "dave"]
    assert Membership.objects.filter(team=people["legal"], role=Role.SKILL_OWNER).count() == 0


def test_saving_a_role_unchanged_records_nothing(people):
    from teams.models import Membership

    before = AuditEvent.objects.count()

    Membership.objects.get(user=people["bob"]).save()

    assert AuditEvent.objects.count() == before


def test_moving_a_skill_to_another_team_in_the_admin_is_audited(people, skill, admin_client):
    response = admin_client.post(reverse("admin:skills_skill_change", args=[skill.pk]), {
        "team": people["hr"].pk, "slug": skill.slug, "name": skill.name, "description": "",
        "teacher_style": "inline", "max_new_tokens": 64, "created_by": ""})

    assert response.status_code == 302, response.content.decode()[:2000]
    skill.refresh_from_db()
    assert skill.team == people["hr"]
    [event] = events("skill.team_moved")
    assert event.actor == people["admin"] and event.team == people["hr"]
    assert event.data == {"skill": "policy-codes", "from_team": "legal", "to_team": "hr"}


def test_editing_a_skill_without_moving_it_records_no_move(skill):
    skill.description = "Now described."
    skill.save()

    assert events("skill.team_moved") == []


def test_deactivating_and_reactivating_a_user_is_audited(people):
    carol = people["carol"]

    carol.is_active = False
    carol.save()
    carol.is_active = True
    carol.save(update_fields=["is_active"])

    assert [e.data["user"] for e in events("user.deactivated")] == ["carol"]
    assert [e.object_id for e in events("user.activated")] == [str(carol.pk)]


def test_deactivating_a_user_in_the_admin_names_the_admin(people, admin_client):
    from django.contrib.auth.models import User

    carol = people["carol"]
    admin_client.post(reverse("admin:auth_user_change", args=[carol.pk]), {
        "username": "carol", "password": carol.password, "is_active": "", "last_login_0": "", "date_joined_0":
        "2026-01-01", "date_joined_1": "00:00:00", "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00"})

    assert User.objects.get(pk=carol.pk).is_active is False
    [event] = events("user.deactivated")
    assert event.actor == people["admin"]


def test_signing_in_records_no_audit_event(people, client):
    before = AuditEvent.objects.count()

    response = client.post(reverse("login"), {"username": "carol", "password": "pw-carol"})

    assert response.status_code == 302
    assert AuditEvent.objects.count() == before


def test_deleting_a_team_records_its_revocations_without_pointing_at_it(people, django_user_model):
    from teams.models import Membership, Team

    ops = Team.objects.create(name="Ops", slug="ops")
    Membership.objects.create(user=people["carol"], team=ops)

    ops.delete()

    [revoked] = events("role.revoked")
    assert revoked.team is None and revoked.data == {"user": "carol", "team": "ops", "role": "viewer"}
    assert AuditEvent.objects.get(action="role.granted", data__team="ops").team is None  # SET NULL, kept
