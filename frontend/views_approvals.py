"""The approvals inbox and deciding a promotion request (four eyes: the service enforces it)."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from frontend.access import page, promotion_request_or_404
from frontend.forms import DecisionForm
from registry.selectors import requests_awaiting
from registry.services.approvals import approval_decide


@page
def approval_inbox(request):
    awaiting = requests_awaiting(request.user).select_related("version__gate", "version__skill__team")
    return render(request, "frontend/approvals.html", {"awaiting": awaiting, "form": DecisionForm()})


@page
@require_POST
def approval_decide_view(request, pk):
    promotion = promotion_request_or_404(request, pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve or reject.")
        return redirect("approvals")
    decision = form.cleaned_data["decision"]
    approval_decide(request=promotion, approver=request.user, decision=decision,
                    comment=form.cleaned_data["comment"])
    version = promotion.version
    if decision == "approve":
        messages.success(request, f"{version.label} approved: it is the production model now.")
    else:
        messages.info(request, f"{version.label} rejected.")
    return redirect("version_detail", pk=version.pk)
