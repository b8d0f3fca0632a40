"""Reads for the audit log."""

from django.db.models import Q, QuerySet

from audit.models import AuditEvent


def audit_events(*, action: str = "", team_id: int | None = None, actor: str = "") -> QuerySet:
    qs = AuditEvent.objects.select_related("team", "actor")
    if action:
        qs = qs.filter(action__startswith=action)
    if team_id:
        qs = qs.filter(team_id=team_id)
    if actor:  # by name: a person's own changes, made in the browser or through a token of theirs
        qs = qs.filter(Q(actor_label=actor) | Q(actor__username=actor))
    return qs


def audit_filter_choices() -> dict:
    """The actions and actors the log holds (the teams to filter by come from the teams app)."""
    return {
        "actions": sorted(set(AuditEvent.objects.values_list("action", flat=True).distinct())),
        "actors": sorted(set(AuditEvent.objects.values_list("actor_label", flat=True).distinct())),
    }
