"""API tokens: my own, and — for skill owners — their teams' service accounts and the tokens of those.

A new token is shown in full once, in the response to the POST that created it: never in the session, a
message or a redirect URL (a reload would then show it again, or a log would keep it). Every other page
shows its prefix only. Roles are checked by the token services; a token or account of a team the user is
not in answers 404."""

from django.contrib import messages
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from frontend.access import page, refused
from frontend.forms import ServiceAccountCreateForm, TokenCreateForm
from teams.models import Membership, Role
from teams.permissions import has_role, require_role, role_in
from teams.selectors import teams_of
from tokens.models import ApiToken, ServiceAccount
from tokens.services import (
    TokenRefused,
    service_account_create,
    service_account_disable,
    service_accounts_of,
    token_create,
    token_revoke,
    tokens_of,
)

PERSONAL = "token"


def _owned_teams(request) -> list:
    """The teams whose service accounts this user manages: a skill owner's (a platform admin's: all)."""
    return [team for team in teams_of(request.user).order_by("name")
            if has_role(request.user, team, Role.SKILL_OWNER)]


def _token_or_404(request, pk) -> ApiToken:
    """My token, or a service account's of one of my teams (the service decides whether I may revoke it)."""
    return get_object_or_404(ApiToken.objects.select_related("user"),
                             Q(user=request.user) | Q(user__service_account__team__in=teams_of(request.user)), pk=pk)


def _account_or_404(request, pk) -> ServiceAccount:
    return get_object_or_404(ServiceAccount.objects.select_related("team", "user"), pk=pk,
                             team__in=teams_of(request.user))


def _account_prefix(account) -> str:
    return f"account-{account.pk}"


def _team_prefix(team) -> str:
    return f"team-{team.pk}"


def _tokens_page(request, *, bound=None, new_token=None, new_token_for=None, status=200):
    """The whole page; `bound` holds the submitted form (by prefix) so its errors show where it was filled
    in; `new_token` is the NewToken just created, shown once."""
    bound = bound or {}
    sections = []
    for team in _owned_teams(request):
        roles = dict(Membership.objects.filter(team=team, user__service_account__isnull=False)
                     .values_list("user_id", "role"))
        accounts = [{
            "account": account,
            "role": Role(roles[account.user_id]).label if account.user_id in roles else "no role",
            "tokens": list(account.user.api_tokens.all()),  # prefetched, newest first
            "token_form": bound.get(_account_prefix(account)) or TokenCreateForm(prefix=_account_prefix(account)),
        } for account in service_accounts_of(team)]
        own = role_in(request.user, team)
        sections.append({"team": team, "accounts": accounts, "own_role": Role(own).label,
                         "form": bound.get(_team_prefix(team)) or ServiceAccountCreateForm(
                             prefix=_team_prefix(team), own_role=own)})
    return render(request, "frontend/tokens.html", {
        "tokens": tokens_of(request.user),
        "form": bound.get(PERSONAL) or TokenCreateForm(prefix=PERSONAL),
        "sections": sections,
        "new_token": new_token,
        "new_token_for": new_token_for,
        "site_url": request.build_absolute_uri("/").rstrip("/"),
        "api_url": request.build_absolute_uri("/api/v1"),
    }, status=status)


@page
def tokens(request):
    """The page; a POST creates a personal token and answers with the page showing it once."""
    if request.method != "POST":
        return _tokens_page(request)
    form = TokenCreateForm(request.POST, prefix=PERSONAL)
    if form.is_valid():
        try:
            new = token_create(user=request.user, name=form.cleaned_data["name"], actor=request.user,
                               expires_in_days=form.cleaned_data["expires_in"])
        except TokenRefused as exc:
            form.add_error(None, str(exc))
        else:
            return _tokens_page(request, new_token=new)
    return _tokens_page(request, bound={PERSONAL: form}, status=400)


@page
@require_POST
def token_revoke_view(request, pk):
    token = _token_or_404(request, pk)
    try:
        token = token_revoke(token=token, actor=request.user)
    except TokenRefused as exc:
        return refused(request, "Not allowed", str(exc), 403)
    messages.success(request, f"Token {token.shown} ({token.name}) revoked: it no longer works.")
    return redirect("tokens")


@page
@require_POST
def service_account_new(request, team_pk):
    team = get_object_or_404(teams_of(request.user), pk=team_pk)
    form = ServiceAccountCreateForm(request.POST, prefix=_team_prefix(team), own_role=role_in(request.user, team))
    if not form.is_valid():
        # the form is kept only for who may submit it; anyone else hears the service's refusal
        require_role(request.user, team, Role.SKILL_OWNER, action="create service accounts")
        return _tokens_page(request, bound={_team_prefix(team): form}, status=400)
    try:
        account = service_account_create(team=team, actor=request.user, **form.cleaned_data)
    except TokenRefused as exc:
        form.add_error(None, str(exc))
        return _tokens_page(request, bound={_team_prefix(team): form}, status=400)
    messages.success(request, f"Service account {account.name} created in {team.name}. Issue it a token to use it.")
    return redirect("tokens")


@page
@require_POST
def service_account_token(request, pk):
    """Issue a token to a service account; the response shows it once."""
    account = _account_or_404(request, pk)
    form = TokenCreateForm(request.POST, prefix=_account_prefix(account))
    if form.is_valid():
        try:
            new = token_create(user=account.user, name=form.cleaned_data["name"], actor=request.user,
                               expires_in_days=form.cleaned_data["expires_in"])
        except TokenRefused as exc:
            if not has_role(request.user, account.team, Role.SKILL_OWNER):
                return refused(request, "Not allowed", str(exc), 403)
            form.add_error(None, str(exc))
        else:
            return _tokens_page(request, new_token=new, new_token_for=account)
    require_role(request.user, account.team, Role.SKILL_OWNER, action="issue service account tokens")
    return _tokens_page(request, bound={_account_prefix(account): form}, status=400)


@page
@require_POST
def service_account_disable_view(request, pk):
    account = service_account_disable(account=_account_or_404(request, pk), actor=request.user)
    messages.success(request, f"Service account {account.name} disabled: its tokens were revoked and stop "
                              "working at once.")
    return redirect("tokens")
