"""Teams and what their members may do: a role per team, each including the powers of the roles before it."""

from django.conf import settings
from django.db import models, transaction


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    CONTRIBUTOR = "contributor", "Contributor"
    SKILL_OWNER = "skill_owner", "Skill owner"
    PLATFORM_ADMIN = "platform_admin", "Platform admin"


# What each role may do; a role includes the powers of the roles before it.
ROLE_RANK = {Role.VIEWER: 0, Role.CONTRIBUTOR: 1, Role.SKILL_OWNER: 2, Role.PLATFORM_ADMIN: 3}


class Team(models.Model):
    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class MembershipQuerySet(models.QuerySet):
    """Bulk writes go through save() and delete(), one row at a time, so every grant, change and revocation
    of a role reaches the audit log (teams.signals) — Django sends no signals for update() or bulk_*."""

    def update(self, **fields):
        with transaction.atomic():
            rows = list(self.select_for_update())
            for membership in rows:
                for name, value in fields.items():
                    setattr(membership, name, value)
                membership.save(update_fields=list(fields))
        return len(rows)

    def bulk_create(self, objs, *args, **kwargs):
        with transaction.atomic():
            for membership in objs:
                membership.save(force_insert=True)
        return objs

    def bulk_update(self, objs, fields, *args, **kwargs):
        with transaction.atomic():
            for membership in objs:
                membership.save(update_fields=list(fields))
        return len(objs)


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"
