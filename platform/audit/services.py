from audit.actors import acting_user
from audit.models import AuditEvent


def audit_record(*, actor, action: str, obj, team=None, data: dict | None = None, actor_label: str = "") -> AuditEvent:
    """Append one event to the audit log. Call inside the transaction of the change it records."""
    label = actor_label or (actor.get_username() if actor is not None else "system")
    return AuditEvent.objects.create(
        actor=actor,
        actor_label=label,
        action=action,
        object_type=type(obj).__name__,
        object_id=str(obj.pk),
        team=team,
        data=data or {},
    )


def audit_record_change(*, action: str, obj, team=None, data: dict | None = None) -> AuditEvent:
    """Record a change no service made (a plain save() in the admin, a shell, a fixture), attributed to the
    signed-in user of the current request, or to the system outside one."""
    return audit_record(actor=acting_user(), action=action, obj=obj, team=team, data=data)
