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
