"""Team webhooks, for skill owners: the endpoints, creating one (its signing secret shown once, in the
response to the POST that made it), switching it on and off, rotating its secret, deleting it, and an
endpoint's delivery log with Redeliver.

An endpoint or delivery of a team the user is not in answers 404; in their own team, anyone below skill
owner is refused (403): the endpoints carry the team's signing secrets and payloads."""

from django.contrib import messages
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from frontend.access import page
from frontend.forms import WebhookCreateForm
from teams.models import Role, Team
from teams.permissions import has_role, require_role
from teams.selectors import teams_of
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import (
    WebhookRefused,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_update,
    webhook_redeliver,
)

DELIVERIES_SHOWN = 100


def _owned_teams(request) -> QuerySet:
    """The teams whose webhooks this user manages: a skill owner's (a platform admin's: all)."""
    owned = [team.pk for team in teams_of(request.user) if has_role(request.user, team, Role.SKILL_OWNER)]
    return Team.objects.filter(pk__in=owned).order_by("name")


def _endpoint_or_404(request, pk) -> WebhookEndpoint:
    endpoint = get_object_or_404(WebhookEndpoint.objects.select_related("team", "created_by"), pk=pk,
                                 team__in=teams_of(request.user))
    require_role(request.user, endpoint.team, Role.SKILL_OWNER, action="see or manage webhooks")
    return endpoint


def _delivery_or_404(request, pk) -> WebhookDelivery:
    return get_object_or_404(WebhookDelivery.objects.select_related("endpoint", "endpoint__team"), pk=pk,
                             endpoint__team__in=teams_of(request.user))


def _list_page(request, *, form=None, status=200):
    teams = _owned_teams(request)
    return render(request, "frontend/webhooks.html", {
        "teams": teams,
        "endpoints": WebhookEndpoint.objects.filter(team__in=teams).select_related("team"),
        "form": form or WebhookCreateForm(teams=teams, initial={"team": request.team if request.team in teams
                                                                else None}),
    }, status=status)


def _endpoint_page(request, endpoint, *, new_secret: str | None = None, status=200):
    deliveries = endpoint.deliveries.all()[:DELIVERIES_SHOWN]
    return render(request, "frontend/webhook_detail.html", {
        "endpoint": endpoint, "deliveries": deliveries, "shown": DELIVERIES_SHOWN, "new_secret": new_secret,
    }, status=status)


@page
def webhooks(request):
    return _list_page(request)


@page
@require_POST
def webhook_new(request):
    teams = _owned_teams(request)
    form = WebhookCreateForm(request.POST, teams=teams)
    if form.is_valid():
        team = get_object_or_404(teams_of(request.user), pk=form.cleaned_data["team"].pk)
        try:  # the service checks the role
            endpoint = webhook_endpoint_create(team=team, url=form.cleaned_data["url"], actor=request.user,
                                               events=form.cleaned_data["events"],
                                               description=form.cleaned_data["description"])
        except WebhookRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Endpoint {endpoint.url} created for {team.name}.")
            return _endpoint_page(request, endpoint, new_secret=endpoint.secret)
    return _list_page(request, form=form, status=400)


@page
def webhook_detail(request, pk):
    return _endpoint_page(request, _endpoint_or_404(request, pk))


@page
@require_POST
def webhook_toggle(request, pk):
    endpoint = _endpoint_or_404(request, pk)
    active = request.POST.get("active") == "on"
    endpoint = webhook_endpoint_update(endpoint=endpoint, actor=request.user, active=active)
    messages.success(request, f"Endpoint {endpoint.url} " + (
        "enabled: it receives the events it subscribes to from now on." if endpoint.active
        else "disabled: no events are sent to it until it is enabled again."))
    return redirect("webhook_detail", pk=endpoint.pk)


@page
@require_POST
def webhook_rotate(request, pk):
    """A new signing secret, shown once in this response; the old one stops signing at once."""
    endpoint = webhook_endpoint_update(endpoint=_endpoint_or_404(request, pk), actor=request.user,
                                       rotate_secret=True)
    messages.success(request, "Signing secret rotated: deliveries from now on are signed with the new one.")
    return _endpoint_page(request, endpoint, new_secret=endpoint.secret)


@page
@require_POST
def webhook_delete(request, pk):
    endpoint = _endpoint_or_404(request, pk)
    url = endpoint.url
    webhook_endpoint_delete(endpoint=endpoint, actor=request.user)
    messages.success(request, f"Endpoint {url} deleted, with its delivery log.")
    return redirect("webhooks")


@page
@require_POST
def webhook_redeliver_view(request, pk):
    delivery = _delivery_or_404(request, pk)
    again = webhook_redeliver(delivery=delivery, actor=request.user)  # the service checks the role
    messages.success(request, f"{again.event_type} ({again.event_id}) queued again as delivery #{again.pk}.")
    return redirect("webhook_detail", pk=delivery.endpoint_id)
