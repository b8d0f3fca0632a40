"""Audit what changes who may see and do what, on every path that saves a model — the Django admin, a
shell, a fixture, a service: a role granted, changed or revoked; a skill moved to another team; a user
deactivated or reactivated. These are plain model saves that no service owns (the admin edits them
directly), so signals are the one place that sees them all; the Membership queryset sends its bulk
writes through save() for the same reason. Skill is named lazily ("skills.Skill"): teams sits below skills
and never imports it. A fixture loaded with `loaddata` (raw=True) is the database's own contents, and
Django says not to query other rows while it loads: those saves are not recorded."""

from django.conf import settings
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from audit.services import audit_record_change
from teams.models import Membership, Team


def _changes(update_fields, field: str) -> bool:
    return update_fields is None or field in update_fields


def _before(sender, instance, fields: tuple[str, ...], raw: bool = False) -> dict | None:
    if raw or instance._state.adding or instance.pk is None:
        return None
    return sender._base_manager.filter(pk=instance.pk).values(*fields).first()


@receiver(pre_save, sender=Membership)
def membership_remember(sender, instance, raw=False, update_fields=None, **kwargs):
    instance._audit_before = _before(sender, instance, ("team_id", "role"), raw)


@receiver(post_save, sender=Membership)
def membership_audit(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    data = {"user": instance.user.get_username(), "team": instance.team.slug, "role": instance.role}
    before = getattr(instance, "_audit_before", None)
    if created or before is None:
        audit_record_change(action="role.granted", obj=instance, team=instance.team, data=data)
    elif (before["team_id"], before["role"]) != (instance.team_id, instance.role):
        old_team = Team.objects.filter(pk=before["team_id"]).values_list("slug", flat=True).first()
        audit_record_change(action="role.changed", obj=instance, team=instance.team,
                            data={**data, "from_role": before["role"], "from_team": old_team})


@receiver(post_delete, sender=Membership)
def membership_revoked_audit(sender, instance, origin=None, **kwargs):
    team = Team.objects.filter(pk=instance.team_id).first()
    data = {"user": instance.user.get_username(), "team": team.slug if team else None, "role": instance.role}
    # When the team itself is being deleted, the event cannot point at it (the row goes in this transaction).
    deleting_team = isinstance(origin, Team) or getattr(origin, "model", None) is Team
    audit_record_change(action="role.revoked", obj=instance, team=None if deleting_team else team, data=data)


@receiver(pre_save, sender="skills.Skill")
def skill_remember_team(sender, instance, raw=False, update_fields=None, **kwargs):
    instance._audit_before = _before(sender, instance, ("team_id",), raw) if _changes(update_fields, "team") else None


@receiver(post_save, sender="skills.Skill")
def skill_team_move_audit(sender, instance, created, **kwargs):
    before = getattr(instance, "_audit_before", None)
    if created or before is None or before["team_id"] == instance.team_id:
        return
    old_team = Team.objects.filter(pk=before["team_id"]).values_list("slug", flat=True).first()
    audit_record_change(action="skill.team_moved", obj=instance, team=instance.team,
                        data={"skill": instance.slug, "from_team": old_team, "to_team": instance.team.slug})


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def user_remember_active(sender, instance, raw=False, update_fields=None, **kwargs):
    # A login saves last_login only: no query for that.
    active = _changes(update_fields, "is_active")
    instance._audit_before = _before(sender, instance, ("is_active",), raw) if active else None


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def user_activation_audit(sender, instance, created, **kwargs):
    before = getattr(instance, "_audit_before", None)
    if created or before is None or before["is_active"] == instance.is_active:
        return
    audit_record_change(action="user.activated" if instance.is_active else "user.deactivated", obj=instance,
                        data={"user": instance.get_username()})
