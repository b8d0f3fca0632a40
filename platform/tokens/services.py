"""Creating, using and revoking API tokens and service accounts. Every change is audited; a token is
returned in full only by `token_create`, once."""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from audit.services import audit_record
from config.errors import AccreteError
from teams.models import ROLE_RANK, Membership, Role
from teams.permissions import RoleRequired, is_machine, is_platform_admin, require_role, role_in
from tokens.models import ApiToken, ServiceAccount

TOKEN = re.compile(r"acc_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
MAX_DAYS = 3650
LAST_USED_GRANULARITY = timedelta(seconds=60)  # last_used_at is written at most once a minute per token


class TokenRefused(AccreteError):
    """A token or service account request that cannot be honoured (a bad expiry, a role above one's own)."""


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # the whole token, `acc_<prefix>_<secret>`: shown once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _team_of(user):
    account = ServiceAccount.objects.filter(user=user).select_related("team").first()
    return account.team if account else None


def _may_manage_tokens_of(actor, user) -> bool:
    if actor is None or actor.pk == user.pk:
        return True
    account = ServiceAccount.objects.filter(user=user).select_related("team").first()
    if account is not None:
        return role_in(actor, account.team) in (Role.SKILL_OWNER, Role.PLATFORM_ADMIN)
    return is_platform_admin(actor)


def token_create(*, user, name: str, actor, expires_in_days: int | None = 90) -> NewToken:
    """A new token for `user` (oneself; a service account of a team one owns skills in), made by a person:
    a service account never mints credentials (its own or another's). `expires_in_days` None: never expires
    (allowed, but shown as such everywhere)."""
    if is_machine(actor):
        raise RoleRequired(f"{actor} is a service account: tokens are made by a person, in the browser.")
    if not _may_manage_tokens_of(actor, user):
        raise RoleRequired(f"{actor} may not create tokens for {user}: a token is its owner's, or a service "
                           "account's, created by a skill owner of its team.")
    if hasattr(user, "service_account") and not user.service_account.is_active:
        raise TokenRefused(f"Service account {user.service_account} is disabled: enable it before issuing tokens.")
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise TokenRefused("Name the token (1 to 100 characters): what it is for, e.g. 'CI pipeline'.")
    if expires_in_days is not None and not (isinstance(expires_in_days, int) and 1 <= expires_in_days <= MAX_DAYS):
        raise TokenRefused(f"A token expires in 1 to {MAX_DAYS} days (or never): got {expires_in_days!r}.")
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    full = f"acc_{prefix}_{secret}"
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=prefix, secret_sha256=_digest(secret), created_by=actor,
            expires_at=timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None)
        audit_record(actor=actor, action="token.created", obj=token, team=_team_of(user),
                     data={"prefix": prefix, "user": user.get_username(), "name": name,
                           "expires_at": token.expires_at.isoformat() if token.expires_at else None})
    return NewToken(token=token, secret=full)


def token_revoke(*, token: ApiToken, actor) -> ApiToken:
    if not _may_manage_tokens_of(actor, token.user):
        raise RoleRequired(f"{actor} may not revoke {token.shown}: a token is revoked by its owner, or (a "
                           "service account's) by a skill owner of its team.")
    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        token.refresh_from_db()
        if changed:
            audit_record(actor=actor, action="token.revoked", obj=token, team=_team_of(token.user),
                         data={"prefix": token.prefix, "user": token.user.get_username(), "name": token.name})
    return token


def token_authenticate(raw: str, *, now: datetime | None = None) -> ApiToken | None:
    """The active token `raw` is, with its user; None for anything else (malformed, unknown, wrong secret,
    expired, revoked, an inactive user or a disabled service account). Records the time of use."""
    match = TOKEN.fullmatch(raw or "")
    if match is None:
        return None
    prefix, secret = match.groups()
    token = ApiToken.objects.select_related("user", "user__service_account").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.secret_sha256, _digest(secret)):
        return None
    now = now or timezone.now()
    if token.state(now) != "active" or not token.user.is_active:
        return None
    account = getattr(token.user, "service_account", None)
    if account is not None and not account.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_GRANULARITY:
        # never backwards: a slower concurrent call does not overwrite a later time
        ApiToken.objects.filter(pk=token.pk).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=now)) \
            .update(last_used_at=now)
        token.last_used_at = now
    return token


def tokens_of(user):
    return ApiToken.objects.filter(user=user)


# --- service accounts --------------------------------------------------------------------------------

def service_account_create(*, team, name: str, role: str, actor, description: str = "") -> ServiceAccount:
    """A skill owner of `team` (or a platform admin) creates a machine identity with one role in the team,
    never above their own (a skill owner's service account can at most be a skill owner)."""
    require_role(actor, team, Role.SKILL_OWNER, action="create service accounts")
    if is_machine(actor):
        raise RoleRequired(f"{actor} is a service account: service accounts are made by a person, in the browser.")
    if role not in Role.values or role == Role.PLATFORM_ADMIN:
        raise TokenRefused(f"A service account holds one team role: viewer, contributor or skill_owner (got {role!r}).")
    if ROLE_RANK[Role(role)] > ROLE_RANK[Role(role_in(actor, team))]:
        raise TokenRefused(f"{actor} is {role_in(actor, team)} in {team.name}: a service account cannot get more.")
    slug = slugify(name)[:40]
    if not slug:
        raise TokenRefused("Name the service account with letters or digits, e.g. 'ci-pipeline'.")
    User = get_user_model()
    username = f"svc-{team.slug}-{slug}"[:150]
    with transaction.atomic():
        if ServiceAccount.objects.filter(team=team, name=slug).exists() or User.objects.filter(username=username).exists():
            raise TokenRefused(f"{team.name} already has a service account named {slug}.")
        user = User(username=username, first_name=slug, last_name=f"(service account of {team.name})")
        user.set_unusable_password()
        user.save()
        account = ServiceAccount.objects.create(user=user, team=team, name=slug, description=description[:300],
                                                created_by=actor)
        Membership.objects.create(user=user, team=team, role=role)  # audited by teams.signals
        audit_record(actor=actor, action="service_account.created", obj=account, team=team,
                     data={"name": slug, "user": username, "role": role})
    return account


def service_account_disable(*, account: ServiceAccount, actor) -> ServiceAccount:
    """Disable a service account: its tokens stop working at once (they are revoked as well)."""
    require_role(actor, account.team, Role.SKILL_OWNER, action="disable service accounts")
    with transaction.atomic():
        now = timezone.now()
        if ServiceAccount.objects.filter(pk=account.pk, disabled_at__isnull=True).update(disabled_at=now):
            for token in ApiToken.objects.filter(user=account.user, revoked_at__isnull=True):
                token_revoke(token=token, actor=actor)
            audit_record(actor=actor, action="service_account.disabled", obj=account, team=account.team,
                         data={"name": account.name})
        account.refresh_from_db()
    return account


def service_accounts_of(team):
    return ServiceAccount.objects.filter(team=team).select_related("user").prefetch_related("user__api_tokens")
