"""The dashboard and the team switcher."""

from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from frontend.access import SESSION_TEAM, page
from teams.selectors import teams_of
from training.selectors import dashboard_summary


@page
def dashboard(request):
    return render(request, "frontend/dashboard.html", dashboard_summary(request.user))


@page
@require_POST
def team_switch(request):
    team = teams_of(request.user).filter(pk=request.POST.get("team_id") or 0).first()
    if team is not None:
        request.session[SESSION_TEAM] = team.pk
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "dashboard"
    return redirect(target)
