"""Machine credentials: API tokens and team service accounts.

A token is `acc_<prefix>_<secret>`: the prefix (public, unique) finds the row, the secret is checked
against its SHA-256 (a 256-bit random secret needs no slow hash). The token itself is shown once, when it
is created, and never stored. A token acts as its user — a person, or a service account: a machine user
holding one role in one team (a Membership like anyone's), so every role and team-privacy rule applies
to it unchanged."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ServiceAccount(models.Model):
    """A machine identity: its own user (no password, cannot sign in to the browser) with one role in one team."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="service_account")
    team = models.ForeignKey("teams.Team", on_delete=models.PROTECT, related_name="service_accounts")
    name = models.CharField(max_length=60)
    description = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="one_service_account_name_per_team")]
        ordering = ["team__name", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.team})"

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What it is for, e.g. 'CI pipeline'.")
    prefix = models.CharField(max_length=16, unique=True)
    secret_sha256 = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"acc_{self.prefix}_… ({self.name})"

    def state(self, now=None) -> str:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    @property
    def shown(self) -> str:
        return f"acc_{self.prefix}_…"
