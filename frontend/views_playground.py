"""The playground: one prompt to one or two versions. The POST only enqueues one `playground_generate` task
per version (answered by the inference service when one runs, else by an eval worker) and returns at once;
each answer panel then polls `playground_answer`, which reads the task's state from the result backend
without waiting. No web worker waits on a model: three people generating used to freeze a 3-worker
gunicorn for everyone for up to a minute.

A task id belongs to the user who asked: it is kept in their session (the last SESSION_KEEP), and an id
their session does not hold answers 404. Only versions the user may see are offered
(registry.selectors.versions_visible_to): the production lineage and their teams' candidates."""

import logging
import time
import uuid

from django.http import Http404
from django.shortcuts import get_object_or_404, render

from config import dispatch
from config.celery_app import app
from frontend.access import page
from frontend.forms import PlaygroundForm
from registry.selectors import production_version, versions_visible_to

log = logging.getLogger(__name__)

SESSION_TASKS = "playground_tasks"
SESSION_KEEP = 20
NO_WORKER_AFTER_S = 60
NO_WORKER_MESSAGE = (f"No worker has taken this prompt in {NO_WORKER_AFTER_S} s — start one with `make worker` "
                     "(or the inference service with `make serve-model`). It stays queued until one does.")


def _visible_versions(request):
    # The shared lineage and this user's teams' candidates; a version id from elsewhere is not a choice.
    return versions_visible_to(request.user).exclude(artifact_path="")


@page
def playground(request):
    if not request.in_a_team:  # the team-privacy rule: a user in no team is offered no version
        return render(request, "frontend/no_team.html", status=403)
    form = PlaygroundForm(request.POST or None, versions=_visible_versions(request).order_by("-number"),
                          production=production_version())
    answers = []
    status = 200
    if request.method == "POST":
        if form.is_valid():
            chat = [{"role": "user", "content": form.cleaned_data["prompt"]}]
            picked = [form.cleaned_data["version"]]
            if form.cleaned_data["compare_with"] and form.cleaned_data["compare_with"] != picked[0]:
                picked.append(form.cleaned_data["compare_with"])
            answers = [_enqueue(request, v, chat, form.cleaned_data["max_new_tokens"]) for v in picked]
        else:
            status = 400
    return render(request, "frontend/playground.html", {"form": form, "answers": answers}, status=status)


@page
def playground_answer(request, task_id):
    """One answer panel, polled every second while its task is queued or running."""
    asked = request.session.get(SESSION_TASKS, {}).get(str(task_id))
    if asked is None:  # not this user's prompt (or an old one, forgotten)
        raise Http404
    version = get_object_or_404(_visible_versions(request).select_related("skill"), pk=asked["version"])
    return render(request, "frontend/_playground_answer.html",
                  {"answer": _answer(str(task_id), version, asked["at"])})


def _enqueue(request, version, messages: list[dict], max_new_tokens: int) -> dict:
    # The task's id is chosen here and kept in this user's session: the poll answers only ids it holds.
    task_id = str(uuid.uuid4())
    tasks = dict(request.session.get(SESSION_TASKS, {}))
    tasks[task_id] = {"version": version.pk, "at": time.time()}
    try:
        app.send_task(dispatch.PLAYGROUND_GENERATE, args=[version.pk, messages, max_new_tokens], task_id=task_id)
    except Exception as exc:  # the broker is down: say so in the panel, not with a 500
        log.warning("playground prompt for %s not queued", version, exc_info=True)
        return {"task_id": task_id, "version": version, "state": "failed",
                "error": f"The prompt could not be queued ({exc}): is the broker (CELERY_BROKER_URL) running?"}
    request.session[SESSION_TASKS] = dict(list(tasks.items())[-SESSION_KEEP:])
    return {"task_id": task_id, "version": version, "state": "queued"}


def _answer(task_id: str, version, asked_at: float) -> dict:
    """What the panel shows, from the task's state in the result backend (never waits)."""
    result = app.AsyncResult(task_id)
    answer = {"task_id": task_id, "version": version}
    if not result.ready():
        state = "generating" if result.state == "STARTED" else "queued"
        waited_long = state == "queued" and time.time() - asked_at > NO_WORKER_AFTER_S
        return {**answer, "state": state, "warning": NO_WORKER_MESSAGE if waited_long else ""}
    if not result.successful():  # the task failed on the worker (or was revoked): its message, not a 500
        return {**answer, "state": "failed", "error": f"The worker could not answer: {result.result}"}
    value = result.result
    if not isinstance(value, dict):
        return {**answer, "state": "done", "text": str(value)}
    return {**answer, "state": "done", "text": value.get("text") or "", "seconds": value.get("seconds"),
            "tokens": value.get("tokens"), "source": value.get("source") or ""}
