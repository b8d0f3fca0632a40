from audit.actors import acting_operator, acting_token, acting_user
from audit.models import AuditEvent


def audit_record(*, actor, action: str, obj, team=None, data: dict | None = None, actor_label: str = "") -> AuditEvent:
    """Append one event to the audit log. Call inside the transaction of the change it records."""
    label = actor_label or (actor.get_username() if actor is not None else acting_operator() or "system")
    token = acting_token()
    if token is not None and actor is not None and actor.pk == token.user_id:
        # a change made through the API: recorded under the token's identity, and which token it was
        label = f"{label} via token {token.shown}"[:150]
        data = {**(data or {}), "token": token.prefix}
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
