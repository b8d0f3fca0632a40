"""Reads for the audit log."""

from django.db.models import QuerySet

from audit.models import AuditEvent


def audit_events(*, action: str = "", team_id: int | None = None, actor: str = "") -> QuerySet:
    qs = AuditEvent.objects.select_related("team", "actor")
    if action:
        qs = qs.filter(action__startswith=action)
    if team_id:
        qs = qs.filter(team_id=team_id)
    if actor:
        qs = qs.filter(actor_label=actor)
    return qs


def audit_filter_choices() -> dict:
    """The actions and actors the log holds (the teams to filter by come from the teams app)."""
    return {
        "actions": sorted(set(AuditEvent.objects.values_list("action", flat=True).distinct())),
        "actors": sorted(set(AuditEvent.objects.values_list("actor_label", flat=True).distinct())),
    }
