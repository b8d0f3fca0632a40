"""The audit log (platform admins): every state change, filterable, newest first."""

from django.core.paginator import Paginator
from django.shortcuts import render

from audit.selectors import audit_events, audit_filter_choices
from frontend.access import page
from frontend.forms import AuditFilterForm
from teams.permissions import RoleRequired

PER_PAGE = 50


@page
def audit_log(request):
    if not request.is_admin:
        raise RoleRequired("The audit log is for platform admins: your account does not have that role.")
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    team_id = filters.get("team")
    if team_id is not None and not 0 < team_id < 2**63:  # a 40-digit id is no team (and no database error)
        team_id = None
    events = audit_events(action=filters.get("action") or "", team_id=team_id, actor=filters.get("actor") or "")
    paginator = Paginator(events, PER_PAGE)
    page_obj = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "frontend/audit.html", {
        "page": page_obj, "filters": filters, "choices": audit_filter_choices(), "query": query.urlencode(),
    })
