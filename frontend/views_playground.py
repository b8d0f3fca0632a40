"""The playground: one prompt to one or two versions, answered by an eval worker. Only versions the user
may see are offered (registry.selectors.versions_visible_to): the production lineage and their teams'
candidates."""

from django.shortcuts import render

from config import dispatch
from frontend.access import page
from frontend.forms import PlaygroundForm
from registry.selectors import production_version, versions_visible_to

WAIT_SECONDS = 60
TIMEOUT_MESSAGE = (f"No eval worker answered within {WAIT_SECONDS} s — start one with `make worker`.")


def _generate(version, messages, max_new_tokens) -> dict:
    from celery.exceptions import TimeoutError as CeleryTimeout

    result = dispatch.send(dispatch.PLAYGROUND_GENERATE, version.pk, messages, max_new_tokens)
    try:
        answer = result.get(timeout=WAIT_SECONDS)
    except CeleryTimeout:
        return {"version": version, "error": TIMEOUT_MESSAGE}
    except Exception as exc:  # the task failed on the worker: show its message, not a 500
        return {"version": version, "error": f"The worker could not answer: {exc}"}
    if isinstance(answer, dict):
        return {"version": version, "text": answer.get("text") or answer.get("output") or "",
                "seconds": answer.get("seconds"), "tokens": answer.get("tokens")}
    return {"version": version, "text": str(answer)}


@page
def playground(request):
    if not request.in_a_team:  # the team-privacy rule: a user in no team is offered no version
        return render(request, "frontend/no_team.html", status=403)
    # The shared lineage and this user's teams' candidates; a version id from elsewhere is not a choice.
    versions = versions_visible_to(request.user).exclude(artifact_path="").order_by("-number")
    form = PlaygroundForm(request.POST or None, versions=versions, production=production_version())
    answers = []
    status = 200
    if request.method == "POST":
        if form.is_valid():
            chat = [{"role": "user", "content": form.cleaned_data["prompt"]}]
            picked = [form.cleaned_data["version"]]
            if form.cleaned_data["compare_with"] and form.cleaned_data["compare_with"] != picked[0]:
                picked.append(form.cleaned_data["compare_with"])
            answers = [_generate(v, chat, form.cleaned_data["max_new_tokens"]) for v in picked]
        else:
            status = 400
    return render(request, "frontend/playground.html", {"form": form, "answers": answers}, status=status)
