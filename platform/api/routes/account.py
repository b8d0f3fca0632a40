"""Who I am and my teams; API tokens and team service accounts; team webhooks and their delivery log;
the audit log (platform admins)."""

from django.shortcuts import get_object_or_404
from ninja import Query, Router

from api import serialize
from api.paging import PageParams, page_of, paged
from api.problems import Problem
from api.schemas import (
    AuditOut,
    DeliveryOut,
    MeOut,
    NewTokenOut,
    NewWebhookOut,
    ServiceAccountIn,
    ServiceAccountOut,
    TeamOut,
    TokenIn,
    TokenOut,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)
from audit.selectors import audit_events
from teams.models import ROLE_RANK, Membership, Role, Team
from teams.permissions import has_role, is_platform_admin
from teams.selectors import teams_of
from tokens.models import ApiToken, ServiceAccount
from tokens.services import (
    service_account_create,
    service_account_disable,
    service_accounts_of,
    token_create,
    token_revoke,
    tokens_of,
)
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_update,
    webhook_redeliver,
)

router = Router()


def _not_through_a_token(request, what: str) -> None:
    """Credentials are minted by a signed-in person (the browser, or its session calling the API), never by
    another credential: a token cannot extend itself past its expiry or outlive its revocation."""
    if getattr(request, "api_token", None) is not None:
        raise Problem(403, f"{what} cannot be created with an API token: sign in to the browser (API tokens "
                      "page), where a person creates them.", code="forbidden")


def _team(request, slug: str) -> Team:
    return get_object_or_404(teams_of(request.user), slug=slug)


def _roles(user) -> dict[int, str]:
    """role_in(user, team) for each of the user's teams, by team id: a query or two, not two per team."""
    if is_platform_admin(user):
        return dict.fromkeys(teams_of(user).values_list("pk", flat=True), Role.PLATFORM_ADMIN)
    return dict(Membership.objects.filter(user=user).values_list("team_id", "role"))


def _team_rows(user) -> list[dict]:
    roles = _roles(user)
    return [{"slug": t.slug, "name": t.name, "role": roles.get(t.pk)} for t in teams_of(user).order_by("name")]


@router.get("/me", response=MeOut, tags=["account"])
def me(request):
    token = getattr(request, "api_token", None)
    return {"username": request.user.get_username(), "is_platform_admin": is_platform_admin(request.user),
            "service_account": ServiceAccount.objects.filter(user=request.user).exists(),
            "token": token.shown if token else None, "teams": _team_rows(request.user)}


@router.get("/teams", response=list[TeamOut], tags=["account"])
def teams(request):
    return _team_rows(request.user)


# --- tokens ---------------------------------------------------------------------------------------------

@router.get("/tokens", response=list[TokenOut], tags=["tokens"], summary="My API tokens (never the secrets)")
def tokens_list(request):
    return [serialize.token(t) for t in tokens_of(request.user).select_related("user")]


@router.post("/tokens", response={201: NewTokenOut}, tags=["tokens"],
             summary="Create a personal token from a browser session (not with a token): the response holds "
                     "it, once")
def tokens_create(request, payload: TokenIn):
    _not_through_a_token(request, "Tokens")
    new = token_create(user=request.user, name=payload.name, actor=request.user,
                       expires_in_days=payload.expires_in_days)
    return 201, {**serialize.token(new.token), "token": new.secret}


@router.delete("/tokens/{prefix}", response={204: None}, tags=["tokens"], summary="Revoke a token")
def tokens_revoke(request, prefix: str):
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    mine = token is not None and token.user_id == request.user.pk
    managed = token is not None and hasattr(token.user, "service_account") and has_role(
        request.user, token.user.service_account.team, Role.SKILL_OWNER)
    if not (mine or managed):
        raise Problem(404, "No token of yours (or of a service account you manage) has this prefix.",
                      code="not-found")
    token_revoke(token=token, actor=request.user)
    return 204, None


@router.get("/teams/{slug}/service-accounts", response=list[ServiceAccountOut], tags=["tokens"])
def service_accounts(request, slug: str):
    accounts = list(service_accounts_of(_team(request, slug)).select_related("team"))
    roles = _account_roles(accounts)
    return [serialize.service_account(a, roles=roles) for a in accounts]


def _account_roles(accounts) -> dict[int, str | None]:
    """role_in(account.user, account.team) by account id, in one query: a superuser, or a platform admin in
    any team, is a platform admin everywhere."""
    rows = Membership.objects.filter(user__in=[a.user_id for a in accounts]).values_list("user_id", "team_id", "role")
    held = {(user, team): role for user, team, role in rows}
    admins = {user for (user, _), role in held.items() if role == Role.PLATFORM_ADMIN}
    return {a.pk: Role.PLATFORM_ADMIN if a.user.is_superuser or a.user_id in admins else held.get((a.user_id, a.team_id))
            for a in accounts}


@router.post("/teams/{slug}/service-accounts", response={201: ServiceAccountOut}, tags=["tokens"],
             summary="Create a service account: a machine identity with one role in the team (skill owners)")
def service_accounts_create(request, slug: str, payload: ServiceAccountIn):
    team = _team(request, slug)
    _not_through_a_token(request, "Service accounts")
    account = service_account_create(team=team, name=payload.name, role=payload.role,
                                     actor=request.user, description=payload.description)
    return 201, serialize.service_account(account)


def _account(request, pk: int) -> ServiceAccount:
    return get_object_or_404(ServiceAccount.objects.select_related("team", "user"), pk=pk,
                             team__in=teams_of(request.user))


@router.get("/service-accounts/{pk}/tokens", response=list[TokenOut], tags=["tokens"],
            summary="A service account's tokens (never the secrets)")
def service_account_tokens(request, pk: int):
    account = _account(request, pk)
    return [serialize.token(t) for t in tokens_of(account.user).select_related("user")]


@router.post("/service-accounts/{pk}/tokens", response={201: NewTokenOut}, tags=["tokens"])
def service_account_token(request, pk: int, payload: TokenIn):
    account = _account(request, pk)
    _not_through_a_token(request, "Tokens")
    new = token_create(user=account.user, name=payload.name, actor=request.user,
                       expires_in_days=payload.expires_in_days)
    return 201, {**serialize.token(new.token), "token": new.secret}


@router.post("/service-accounts/{pk}/disable", response=ServiceAccountOut, tags=["tokens"])
def service_account_off(request, pk: int):
    return serialize.service_account(service_account_disable(account=_account(request, pk), actor=request.user))


# --- webhooks -------------------------------------------------------------------------------------------

def _endpoints(request):
    """Endpoints of the teams where this user is a skill owner (they hold the signing secrets)."""
    teams = [pk for pk, role in _roles(request.user).items() if ROLE_RANK[Role(role)] >= ROLE_RANK[Role.SKILL_OWNER]]
    return WebhookEndpoint.objects.filter(team_id__in=teams).select_related("team")


@router.get("/webhooks", response=list[WebhookOut], tags=["webhooks"])
def webhooks_list(request, team: str | None = None):
    qs = _endpoints(request)
    return [serialize.webhook(w) for w in (qs.filter(team__slug=team) if team else qs)]


@router.post("/webhooks", response={201: NewWebhookOut}, tags=["webhooks"],
             summary="Add an endpoint (skill owners): the response holds its signing secret")
def webhooks_create(request, payload: WebhookIn):
    endpoint = webhook_endpoint_create(team=_team(request, payload.team), url=payload.url, actor=request.user,
                                       events=payload.events, description=payload.description)
    return 201, {**serialize.webhook(endpoint), "secret": endpoint.secret}


@router.patch("/webhooks/{pk}", response=NewWebhookOut | WebhookOut, tags=["webhooks"],
              summary="Change an endpoint; with rotate_secret the response holds the new secret, once")
def webhooks_edit(request, pk: int, payload: WebhookPatch):
    endpoint = get_object_or_404(_endpoints(request), pk=pk)
    endpoint = webhook_endpoint_update(endpoint=endpoint, actor=request.user, **payload.dict())
    if payload.rotate_secret:
        return {**serialize.webhook(endpoint), "secret": endpoint.secret}
    return serialize.webhook(endpoint)


@router.delete("/webhooks/{pk}", response={204: None}, tags=["webhooks"])
def webhooks_delete(request, pk: int):
    webhook_endpoint_delete(endpoint=get_object_or_404(_endpoints(request), pk=pk), actor=request.user)
    return 204, None


@router.get("/webhooks/{pk}/deliveries", response=page_of(DeliveryOut), tags=["webhooks"],
            summary="The delivery log: status, attempts, latency")
def webhooks_deliveries(request, pk: int, page: Query[PageParams], status: str | None = None):
    endpoint = get_object_or_404(_endpoints(request), pk=pk)
    qs = WebhookDelivery.objects.filter(endpoint=endpoint)
    return paged(qs.filter(status=status) if status else qs, serialize.delivery, page)


@router.post("/webhook-deliveries/{pk}/redeliver", response={202: DeliveryOut}, tags=["webhooks"])
def webhooks_redeliver(request, pk: int):
    delivery = get_object_or_404(WebhookDelivery.objects.select_related("endpoint__team"), pk=pk,
                                 endpoint__in=_endpoints(request))
    return 202, serialize.delivery(webhook_redeliver(delivery=delivery, actor=request.user))


# --- audit ----------------------------------------------------------------------------------------------

@router.get("/audit", response=page_of(AuditOut), tags=["audit"], summary="The audit log (platform admins)")
def audit(request, page: Query[PageParams], action: str = "", team: str | None = None, actor: str = ""):
    if not is_platform_admin(request.user):
        raise Problem(403, "The audit log is for platform admins.", code="role-required")
    team_id = Team.objects.filter(slug=team).values_list("pk", flat=True).first() if team else None
    events = audit_events(action=action, team_id=team_id, actor=actor) if not (team and team_id is None) else []
    return paged(events, _audit_row, page)


def _audit_row(e) -> dict:
    return {"id": e.pk, "at": e.created_at, "actor": e.actor_label, "action": e.action,
            "object_type": e.object_type, "object_id": e.object_id, "team": e.team.slug if e.team_id else None,
            "data": e.data}
