"""The audit log is the record of every state change, so it is also where events come from: an audit
event of a kind endpoints subscribe to becomes a delivery to each endpoint that wants it, in the same
transaction (an outbox), sent after the commit."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from audit.models import AuditEvent
from webhooks.services import webhook_deliveries_for


@receiver(post_save, sender=AuditEvent, dispatch_uid="webhooks.from_audit")
def audit_event_to_webhooks(sender, instance: AuditEvent, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        webhook_deliveries_for(instance)
