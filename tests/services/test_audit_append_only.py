"""The audit log is append-only in the database itself: on PostgreSQL a trigger refuses a raw UPDATE or
DELETE, whatever the code that sends it; the ORM refuses them on every backend."""

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit.models import AuditEvent
from audit.services import audit_record
from tests.fixtures.backends import ON_POSTGRES

postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="the append-only trigger exists on PostgreSQL only "
                                                           "(set DATABASE_URL, as `make test` does where it answers)")


@pytest.fixture
def event(people):
    return audit_record(actor=people["bob"], action="skill.created", obj=people["legal"], team=people["legal"],
                        data={"slug": "policy-codes"})


def raw(sql: str, *params):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_the_orm_refuses_to_change_or_delete_an_event(event):
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="nothing.happened")
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(PermissionError):
        event.save()


@postgres_only
@pytest.mark.parametrize("sql", [
    "UPDATE audit_auditevent SET action = 'nothing.happened' WHERE id = %s",
    "UPDATE audit_auditevent SET actor_label = 'someone else' WHERE id = %s",
    "UPDATE audit_auditevent SET data = '{}'::jsonb WHERE id = %s",
    "UPDATE audit_auditevent SET created_at = created_at - interval '1 day' WHERE id = %s",
    "UPDATE audit_auditevent SET team_id = NULL, action = 'x' WHERE id = %s",
    "DELETE FROM audit_auditevent WHERE id = %s",
])
def test_postgresql_refuses_a_raw_update_or_delete(event, sql):
    with pytest.raises(DatabaseError, match="append-only"):
        raw(sql, event.pk)

    kept = AuditEvent.objects.get(pk=event.pk)
    assert (kept.action, kept.actor_label, kept.data, kept.team_id) == (
        "skill.created", "bob", {"slug": "policy-codes"}, event.team_id)


@postgres_only
def test_postgresql_refuses_moving_an_event_to_another_actor(event, people):
    with pytest.raises(DatabaseError, match="append-only"):
        raw("UPDATE audit_auditevent SET actor_id = %s WHERE id = %s", people["carol"].pk, event.pk)


@postgres_only
def test_deleting_a_user_keeps_their_events_under_their_name(event, people):
    """The one change allowed: ON DELETE SET NULL of the actor (the name stays in actor_label)."""
    people["bob"].delete()

    kept = AuditEvent.objects.get(pk=event.pk)
    assert kept.actor_id is None and kept.actor_label == "bob" and kept.action == "skill.created"
