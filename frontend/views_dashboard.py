"""The dashboard and the team switcher."""

from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from frontend.access import SESSION_TEAM, page
from teams.selectors import teams_of
from training.selectors import dashboard_summary


@page
def dashboard(request):
    # A user in no team sees the empty state (the template says whom to ask), not the lineage's skills.
    context = dashboard_summary(request.user) if request.in_a_team else {}
    return render(request, "frontend/dashboard.html", context)


@page
@require_POST
def team_switch(request):
    chosen = request.POST.get("team_id", "")
    # Anything but a plain id (a word, "²", 40 digits) picks no team: no 500 from int() or the database.
    valid = chosen.isascii() and chosen.isdigit() and len(chosen) <= 18
    team = teams_of(request.user).filter(pk=int(chosen)).first() if valid else None
    if team is not None:
        request.session[SESSION_TEAM] = team.pk
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "dashboard"
    return redirect(target)
