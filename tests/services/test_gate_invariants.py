"""The gate owns promotion: no path moves a version around it or around four eyes.

First the primitive itself (registry.services.versions._transition, the one writer of a version's status)
refuses what the rules forbid, whoever calls it. Then every path that can move a version — each service,
each admin action, each management command, each browser POST — is tried on what the rules forbid, and
each is refused with nothing changed: no status, no production, no request, no approval, no audit row.
The last tests check the walk is complete: a new service, admin action or POST view fails them until it
is walked here too."""

import inspect
import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from registry.errors import GateNotReady, SelfApprovalError, TransitionError
from registry.models import Approval, BaseModel, GateResult, ModelVersion, PromotionRequest
from registry.services import approvals, gates, versions
from teams.permissions import RoleRequired
from tests.fixtures.registry import promote
from tokens.services import token_create
from training.models import TrainingJob

REPO = Path(__file__).resolve().parents[2]

# --- the primitive --------------------------------------------------------------------------------


def test_the_primitive_refuses_awaiting_approval_without_a_passing_gate(skill, make_candidate):
    evaluating = make_candidate(skill, status="evaluating")
    with pytest.raises(TransitionError, match="has no passing gate result"):
        versions._transition(version=evaluating, to="awaiting_approval")
    assert ModelVersion.objects.get(pk=evaluating.pk).status == "evaluating"


def test_the_primitive_refuses_awaiting_approval_on_a_blocking_gate(skill, make_candidate):
    blocked = make_candidate(skill, status="blocked")
    # even if a bug moved it back to evaluating, a blocking result never lets it await approval
    ModelVersion.objects.filter(pk=blocked.pk).update(status="evaluating")
    with pytest.raises(TransitionError, match="has no passing gate result"):
        versions._transition(version=ModelVersion.objects.get(pk=blocked.pk), to="awaiting_approval")


def test_the_primitive_refuses_a_pass_against_a_parent_that_left_production(people, skill, make_candidate,
                                                                           base_version):
    # given production moved to a sibling, and a candidate of v1 that (by a race the services do not
    # allow) is still evaluating with a passing result against v1
    promote(make_candidate(skill), requester=people["alice"], approver=people["bob"])
    candidate = make_candidate(skill, parent=base_version, status="candidate")
    GateResult.objects.create(candidate=candidate, baseline=base_version, verdict="pass")
    ModelVersion.objects.filter(pk=candidate.pk).update(status="evaluating")
    # when / then
    with pytest.raises(TransitionError, match=f"trained from v{base_version.number}, but production is now"):
        versions._transition(version=ModelVersion.objects.get(pk=candidate.pk), to="awaiting_approval")


def test_the_primitive_refuses_production_without_an_approved_request(skill, make_candidate, base_version):
    awaiting = make_candidate(skill)
    with pytest.raises(TransitionError, match="has no approved promotion request"):
        versions._transition(version=awaiting, to="production")
    assert ModelVersion.objects.get(status="production") == base_version


def test_the_primitive_refuses_a_rollback_to_a_version_never_in_production(people, base_version):
    other = versions.version_register_base(base_model=BaseModel.objects.create(
        name="other", source="hf", source_path="/x", artifact_path="base/other", sha256="1" * 64))
    with pytest.raises(TransitionError, match="was never production"):
        versions._transition(version=other, to="production", rollback=True, actor=people["admin"])
    with pytest.raises(TransitionError, match="Only a platform admin"):
        versions._transition(version=other, to="production", rollback=True, actor=people["bob"])
    assert ModelVersion.objects.get(status="production") == base_version


def test_the_primitive_refuses_stale_for_a_candidate_of_the_production_version(skill, make_candidate):
    awaiting = make_candidate(skill)
    with pytest.raises(TransitionError, match="it is not stale"):
        versions._transition(version=awaiting, to="stale", reason="made up")
    assert ModelVersion.objects.get(pk=awaiting.pk).status == "awaiting_approval"


def test_the_raw_transition_is_private_to_the_registry_services():
    # The primitive is called `_transition` and only registry.services (and this file, which tests it)
    # may touch it; `version_transition`, its old public name, is gone everywhere.
    allowed = {REPO / "platform" / "registry" / "services", Path(__file__).resolve()}
    offenders = []
    for root in ("platform", "skills", "frontend", "workers", "bench", "tests"):
        for path in (REPO / root).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "version_transition" in text and path.resolve() != Path(__file__).resolve():
                offenders.append(f"{path.relative_to(REPO)}: version_transition")
            if re.search(r"\b_transition\b", text) and not any(a == path.resolve() or a in path.parents
                                                              for a in allowed):
                offenders.append(f"{path.relative_to(REPO)}: _transition")
    assert offenders == []


# --- the walk ---------------------------------------------------------------------------------------


@pytest.fixture
def world(people, skill, base_version, make_candidate):
    """v1 production; v2 passed the gate (no request); v3 passed, asked for by bob; v4 passed, asked for
    by admin; v5 blocked, with a request row that should never exist; v6 evaluating (no scores); v7 a
    candidate; v8 failed; v9 a second base model, registered after v1 and never production."""
    awaiting = make_candidate(skill)
    requested = make_candidate(skill)
    request = approvals.promotion_request_create(version=requested, actor=people["bob"])
    admin_requested = make_candidate(skill)
    admin_request = approvals.promotion_request_create(version=admin_requested, actor=people["admin"])
    blocked = make_candidate(skill, status="blocked")
    blocked_request = PromotionRequest.objects.create(version=blocked, requested_by=people["alice"])
    evaluating = make_candidate(skill, status="evaluating")
    candidate = make_candidate(skill, status="candidate")
    failed = make_candidate(skill, status="evaluating")
    gates.gate_fail(version=failed, error="RuntimeError: the eval worker ran out of memory")
    never = versions.version_register_base(base_model=BaseModel.objects.create(
        name="other", source="hf", source_path="/x", artifact_path="base/other", sha256="1" * 64))
    objects = dict(base=base_version, awaiting=awaiting, requested=requested, request=request,
                   admin_requested=admin_requested, admin_request=admin_request, blocked=blocked,
                   blocked_request=blocked_request, evaluating=evaluating, candidate=candidate,
                   failed=ModelVersion.objects.get(pk=failed.pk), never=never)
    return {name: (ModelVersion.objects.get(pk=obj.pk) if isinstance(obj, ModelVersion) else obj)
            for name, obj in objects.items()}


def snapshot() -> dict:
    return {
        "versions": list(ModelVersion.objects.order_by("pk").values_list(
            "pk", "status", "promoted_at", "promoted_by", "gate_started_at", "gate_requeues", "gate_error")),
        "requests": list(PromotionRequest.objects.order_by("pk").values_list("pk", "status", "closed_reason")),
        "approvals": Approval.objects.count(),
        "gates": GateResult.objects.count(),
        "audit": AuditEvent.objects.count(),
        "jobs": TrainingJob.objects.count(),
    }


def refused_by_service(call, error, match=""):
    with pytest.raises(error, match=match):
        call()


def _command(*args) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue() + err.getvalue()
    except Exception as exc:  # CommandError: a refusal the command prints
        return 1, f"{type(exc).__name__}: {exc}"
    return 0, out.getvalue() + err.getvalue()


def refused_by_command(*args, match: str):
    code, out = _command(*[a() if callable(a) else a for a in args])
    assert code == 1 and re.search(match, out), out


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def refused_in_admin(people, action: str, version, match: str):
    from django.contrib.messages import ERROR

    response = _client(people["admin"]).post(reverse("admin:registry_modelversion_changelist"),
                                             {"action": action, "_selected_action": [version.pk]}, follow=True)
    shown = [(m.level, m.message) for m in response.context["messages"]]
    assert response.status_code == 200 and len(shown) == 1, shown
    assert shown[0][0] == ERROR and re.search(match, shown[0][1]), shown


def refused_in_browser(user, url: str, status: int, match: str = "", data: dict | None = None):
    response = _client(user).post(url, data or {}, follow=status == 302)
    if status == 302:  # refused with a message on the page it redirects to
        assert response.redirect_chain and re.search(match, response.content.decode()), response.content[:300]
    else:
        assert response.status_code == status and re.search(match, response.content.decode())


def refused_by_api(token: str | None, path: str, status: int, match: str = "", body: dict | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    response = Client().post(f"/api/v1{path}", body or {}, content_type="application/json", **headers)
    assert response.status_code == status, response.content[:400]
    assert response["Content-Type"] == "application/problem+json"
    assert re.search(match, response.json()["detail"]), response.json()


def _walk(people, w):
    """Each path that can move a version, tried on what the rules forbid: name → a call that asserts the
    refusal."""
    bob, vera, alice, admin, carol = (people[n] for n in ("bob", "vera", "alice", "admin", "carol"))
    api = {name: token_create(user=people[name], name="walk", actor=people[name]).secret
           for name in ("alice", "bob", "vera", "carol")}  # made before the snapshot: their audit rows with it

    def n(name):
        return f"v{w[name].number}"

    def url(view, name):
        return reverse(view, args=[w[name].pk])

    return {
        # services
        "service: promote without an approved request": lambda: refused_by_service(lambda: versions.version_promote(version=w["awaiting"], actor=bob), TransitionError, "no approved promotion request"),
        "service: promote a blocked version": lambda: refused_by_service(lambda: versions.version_promote(version=w["blocked"], actor=bob), TransitionError, "is blocked by the gate; only a version awaiting approval"),
        "service: roll back to a version never in production": lambda: refused_by_service(lambda: versions.version_rollback(version=w["never"], actor=admin), TransitionError, "never production"),
        "service: roll back to a candidate": lambda: refused_by_service(lambda: versions.version_rollback(version=w["awaiting"], actor=admin), TransitionError, "only a retired version"),
        "service: roll back without being a platform admin": lambda: refused_by_service(lambda: versions.version_rollback(version=w["never"], actor=bob), TransitionError, "platform admin"),
        "service: roll back as the system": lambda: refused_by_service(lambda: versions.version_rollback(version=w["never"], actor=None), TransitionError, "platform admin"),
        "service: mark a current candidate stale": lambda: (versions.version_mark_stale(version=w["awaiting"], actor=admin) is None or pytest.fail("marked")),
        "service: request promotion of a blocked version": lambda: refused_by_service(lambda: approvals.promotion_request_create(version=w["blocked"], actor=alice), TransitionError, "only a candidate that passed the gate"),
        "service: request promotion of an ungated version": lambda: refused_by_service(lambda: approvals.promotion_request_create(version=w["evaluating"], actor=alice), TransitionError, "only a candidate that passed the gate"),
        "service: request promotion of a failed version": lambda: refused_by_service(lambda: approvals.promotion_request_create(version=w["failed"], actor=alice), TransitionError, "only a candidate that passed the gate"),
        "service: request promotion as a viewer": lambda: refused_by_service(lambda: approvals.promotion_request_create(version=w["awaiting"], actor=vera), RoleRequired),
        "service: approve one's own request": lambda: refused_by_service(lambda: approvals.approval_decide(request=w["request"], approver=bob, decision="approve"), SelfApprovalError, "four-eyes"),
        "service: approve as a viewer": lambda: refused_by_service(lambda: approvals.approval_decide(request=w["request"], approver=vera, decision="approve"), RoleRequired),
        "service: approve as another team's skill owner": lambda: refused_by_service(lambda: approvals.approval_decide(request=w["request"], approver=carol, decision="approve"), RoleRequired),
        "service: approve a blocked version's request": lambda: refused_by_service(lambda: approvals.approval_decide(request=w["blocked_request"], approver=bob, decision="approve"), TransitionError, "only a candidate that passed the gate can be approved"),
        "service: gate a version whose scores are missing": lambda: refused_by_service(lambda: gates.gate_evaluate(candidate=w["evaluating"]), GateNotReady, "Scores missing"),
        "service: gate a candidate whose gate never started": lambda: refused_by_service(lambda: gates.gate_evaluate(candidate=w["candidate"]), TransitionError, "only an evaluating candidate"),
        "service: gate a failed version": lambda: refused_by_service(lambda: gates.gate_evaluate(candidate=w["failed"]), TransitionError, "only an evaluating candidate"),
        "service: re-run the gate of a blocked version": lambda: refused_by_service(lambda: gates.gate_rerun(version=w["blocked"], actor=bob), TransitionError, "only a version whose gate failed"),
        "service: re-run the gate of a version awaiting approval": lambda: refused_by_service(lambda: gates.gate_rerun(version=w["awaiting"], actor=bob), TransitionError, "only a version whose gate failed"),
        "service: re-run a gate as a contributor": lambda: refused_by_service(lambda: gates.gate_rerun(version=w["failed"], actor=alice), RoleRequired, "Skill owner"),
        "service: start the gate of a blocked version": lambda: (gates.gate_start(version=w["blocked"]).status == "blocked" or pytest.fail("moved")),
        "service: fail the gate of a version awaiting approval": lambda: (gates.gate_fail(version=w["awaiting"], error="x") is False or pytest.fail("moved")),
        "service: ask for the job's promotion of a blocked version": lambda: (gates.gate_request_promotion(version=w["blocked"]) is None or pytest.fail("requested")),
        # admin actions
        "admin: promote without an open request": lambda: refused_in_admin(people, "promote", w["awaiting"], "has no open promotion request"),
        "admin: promote a blocked version": lambda: refused_in_admin(people, "promote", w["blocked"], "is blocked by the gate"),
        "admin: promote one's own request": lambda: refused_in_admin(people, "promote", w["admin_requested"], "four-eyes"),
        "admin: roll back to a version never in production": lambda: refused_in_admin(people, "rollback", w["never"], "never production"),
        "admin: roll back to a candidate": lambda: refused_in_admin(people, "rollback", w["awaiting"], "only a retired version"),
        # management commands
        "command: show a blocked gate": lambda: refused_by_command("gate", n("blocked"), match="BLOCK"),
        "command: re-run the gate of a blocked version": lambda: refused_by_command("gate", n("blocked"), "--rerun", match="only a version whose gate failed"),
        "command: re-run the gate of a version awaiting approval": lambda: refused_by_command("gate", n("awaiting"), "--rerun", match="only a version whose gate failed"),
        "command: gate a failed version without --rerun": lambda: refused_by_command("gate", n("failed"), match="--rerun"),
        # browser POSTs
        "browser: request promotion of a blocked version": lambda: refused_in_browser(alice, url("version_request_promotion", "blocked"), 409, "only a candidate that passed the gate"),
        "browser: request promotion as a viewer": lambda: refused_in_browser(vera, url("version_request_promotion", "awaiting"), 403, "Contributor role"),
        "browser: approve one's own request": lambda: refused_in_browser(bob, reverse("approval_decide", args=[w["request"].pk]), 403, "four-eyes", {"decision": "approve"}),
        "browser: approve as a viewer": lambda: refused_in_browser(vera, reverse("approval_decide", args=[w["request"].pk]), 403, "Skill owner role", {"decision": "approve"}),
        "browser: approve a blocked version's request": lambda: refused_in_browser(bob, reverse("approval_decide", args=[w["blocked_request"].pk]), 409, "blocked", {"decision": "approve"}),
        "browser: retrain a version awaiting approval": lambda: refused_in_browser(alice, url("version_retrain", "awaiting"), 302, "is not a stale or blocked candidate"),
        "browser: retrain as a viewer": lambda: refused_in_browser(vera, url("version_retrain", "blocked"), 403, "Contributor role"),
        "browser: re-run the gate of a blocked version": lambda: refused_in_browser(bob, url("version_rerun_gate", "blocked"), 409, "only a version whose gate failed"),
        "browser: re-run a gate as a viewer": lambda: refused_in_browser(vera, url("version_rerun_gate", "failed"), 403, "Skill owner role"),
        "browser: re-run another team's gate": lambda: refused_in_browser(carol, url("version_rerun_gate", "failed"), 404),
        # the HTTP API (each person calls with an API token of their own)
        "api: request promotion of a blocked version": lambda: refused_by_api(api["alice"], f"/versions/{w['blocked'].number}/promotion-requests", 409, "only a candidate that passed the gate"),
        "api: request promotion as a viewer": lambda: refused_by_api(api["vera"], f"/versions/{w['awaiting'].number}/promotion-requests", 403, "Contributor role"),
        "api: request promotion of another team's candidate": lambda: refused_by_api(api["carol"], f"/versions/{w['awaiting'].number}/promotion-requests", 404),
        "api: approve one's own request": lambda: refused_by_api(api["bob"], f"/promotion-requests/{w['request'].pk}/decision", 403, "four-eyes", {"decision": "approve"}),
        "api: approve as a viewer": lambda: refused_by_api(api["vera"], f"/promotion-requests/{w['request'].pk}/decision", 403, "Skill owner role", {"decision": "approve"}),
        "api: approve as another team's skill owner": lambda: refused_by_api(api["carol"], f"/promotion-requests/{w['request'].pk}/decision", 404, "", {"decision": "approve"}),
        "api: approve a blocked version's request": lambda: refused_by_api(api["bob"], f"/promotion-requests/{w['blocked_request'].pk}/decision", 409, "blocked", {"decision": "approve"}),
        "api: approve without a token": lambda: refused_by_api(None, f"/promotion-requests/{w['request'].pk}/decision", 401, "", {"decision": "approve"}),
        "api: re-run the gate of a blocked version": lambda: refused_by_api(api["bob"], f"/versions/{w['blocked'].number}/gate/rerun", 409, "only a version whose gate failed"),
        "api: re-run a gate as a viewer": lambda: refused_by_api(api["vera"], f"/versions/{w['failed'].number}/gate/rerun", 403, "Skill owner role"),
        "api: re-run another team's gate": lambda: refused_by_api(api["carol"], f"/versions/{w['failed'].number}/gate/rerun", 404),
    }


# The names are listed once here so each is its own test; the walk itself builds the calls per test.
WALK = [
    "service: promote without an approved request", "service: promote a blocked version",
    "service: roll back to a version never in production", "service: roll back to a candidate",
    "service: roll back without being a platform admin", "service: roll back as the system",
    "service: mark a current candidate stale", "service: request promotion of a blocked version",
    "service: request promotion of an ungated version", "service: request promotion of a failed version",
    "service: request promotion as a viewer", "service: approve one's own request", "service: approve as a viewer",
    "service: approve as another team's skill owner", "service: approve a blocked version's request",
    "service: gate a version whose scores are missing", "service: gate a candidate whose gate never started",
    "service: gate a failed version", "service: re-run the gate of a blocked version",
    "service: re-run the gate of a version awaiting approval", "service: re-run a gate as a contributor",
    "service: start the gate of a blocked version", "service: fail the gate of a version awaiting approval",
    "service: ask for the job's promotion of a blocked version",
    "admin: promote without an open request", "admin: promote a blocked version", "admin: promote one's own request",
    "admin: roll back to a version never in production", "admin: roll back to a candidate",
    "command: show a blocked gate",
    "command: re-run the gate of a blocked version", "command: re-run the gate of a version awaiting approval",
    "command: gate a failed version without --rerun",
    "browser: request promotion of a blocked version", "browser: request promotion as a viewer",
    "browser: approve one's own request", "browser: approve as a viewer",
    "browser: approve a blocked version's request", "browser: retrain a version awaiting approval",
    "browser: retrain as a viewer", "browser: re-run the gate of a blocked version",
    "browser: re-run a gate as a viewer", "browser: re-run another team's gate",
    "api: request promotion of a blocked version", "api: request promotion as a viewer",
    "api: request promotion of another team's candidate", "api: approve one's own request",
    "api: approve as a viewer", "api: approve as another team's skill owner",
    "api: approve a blocked version's request", "api: approve without a token",
    "api: re-run the gate of a blocked version", "api: re-run a gate as a viewer", "api: re-run another team's gate",
]


@pytest.mark.parametrize("path", WALK)
def test_every_path_refuses_what_the_rules_forbid_and_changes_nothing(people, world, fake_tasks, path):
    # given
    attempt = _walk(people, world)[path]
    before = snapshot()
    # when
    attempt()
    # then
    assert snapshot() == before
    assert ModelVersion.objects.get(status="production") == world["base"]
    assert fake_tasks.calls == []


def test_the_walk_lists_every_attempt(people, world):
    assert sorted(_walk(people, world)) == sorted(WALK)


# --- the walk is complete -------------------------------------------------------------------------

# Services that create versions or move them only in the rules' own direction (stale, failed, a decision
# recorded from scores); each has its own tests (test_gate.py, test_dead_ends.py, test_version_promote.py).
CREATE_OR_DEMOTE = {"version_register_base", "version_create_candidate", "gate_reap_stuck",
                    "stale_reason", "production_version", "require_awaiting_approval", "gate_suites",
                    "gate_plan", "gate_timeout_s", "small_suite_warning", "lineage_reason"}


def test_every_public_registry_service_is_walked_or_listed():
    walked = {m.group(1) for m in re.finditer(r"(?:versions|approvals|gates)\.(\w+)\(",
                                              inspect.getsource(_walk))}
    public = {name for module in (versions, approvals, gates) for name, obj in vars(module).items()
              if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith("_")}
    assert public - walked - CREATE_OR_DEMOTE == set()


def test_every_admin_action_and_version_post_is_walked():
    from frontend import urls
    from registry.admin import ModelVersionAdmin

    source = inspect.getsource(_walk)
    assert all(f'"{action}"' in source for action in ModelVersionAdmin.actions)
    pages = {"versions", "version_detail", "matrix", "matrix_json", "approvals"}
    posts = {p.name for p in urls.urlpatterns
             if p.callback.__module__ in {"frontend.views_versions", "frontend.views_approvals"}} - pages
    assert posts and all(f'"{name}"' in source for name in posts), posts


def test_every_api_post_on_versions_and_promotions_is_walked():
    from api.routes import versions as routes

    source = inspect.getsource(_walk)
    posts = [path for path, view in routes.router.path_operations.items()
             if any("POST" in op.methods for op in view.operations)]
    # a path's template, its parameters filled in the walk: "/versions/{number}/gate/rerun" → "/gate/rerun"
    tails = [path.split("}")[-1] for path in posts]
    assert posts and all(tail in source for tail in tails), posts


def test_a_second_skill_owner_is_the_one_way_to_production(people, skill, make_candidate, base_version):
    # the positive path, for contrast: bob asks, dave approves
    version = make_candidate(skill, requested_by=people["bob"])
    promote(version, requester=people["bob"], approver=people["dave"])
    assert ModelVersion.objects.get(status="production") == version and version.promoted_by == people["dave"]
    assert AuditEvent.objects.filter(action="version.production", object_id=str(version.pk)).get().data[
        "request"] == version.promotion_requests.get().pk

