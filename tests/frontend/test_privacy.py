"""One team-privacy rule, on every page that could show a skill's cases: the role × team × page matrix.

A skill's case contents — prompts, references, the model's outputs on them — are visible to its team and
to platform admins only; other teams see the skill's name, owning team, scores and the number of flipped
cases; a user in no team sees an empty state.

The scene: Legal's candidate adds policy-codes (fail→pass on all 20 cases) and breaks 2 of HR's 5
leave-codes cases (pass→fail), so its gate flipped cases in two teams' skills. Every case text carries its
skill's slug, so a page leaks a team's cases exactly when that slug appears next to "question", "answer"
or "output"."""

import pytest
from django.urls import reverse

USERS = {  # who -> (the teams whose cases they may read, whether they are in a team at all)
    "vera": ({"legal"}, True),  # Legal viewer
    "alice": ({"legal"}, True),  # Legal contributor
    "bob": ({"legal"}, True),  # Legal skill owner
    "carol": ({"hr"}, True),  # HR skill owner: the other team
    "nora": (set(), False),  # in no team
    "admin": ({"legal", "hr"}, True),  # superuser
    "pat": ({"legal", "hr"}, True),  # the platform_admin role in HR, not a superuser
}
SLUG = {"legal": "policy-codes", "hr": "leave-codes"}
HR_FLIPS = 2  # leave-codes cases the candidate broke


def prompts(team):
    return f"{SLUG[team]} question"


def references(team):
    return f"{SLUG[team]} answer"


def outputs(team, version):
    return f"{version}-output-{SLUG[team]}"


def record(version, skill, *, passing: int, tag: str):
    """`version`'s scores on `skill` as a worker records them: the first `passing` cases right, each output
    naming the version and the skill (tag-output-slug-i)."""
    from evaluation.services import eval_run_claim, eval_run_complete

    suite = skill.eval_suites.get()
    run = eval_run_claim(version=version, suite=suite)
    cases = suite.cases.order_by("pk")
    eval_run_complete(run=run, seconds=0.01, outputs=[
        {"case_id": case.pk, "output": f"{tag}-output-{skill.slug}-{i}", "passed": i < passing,
         "score": float(i < passing), "detail": ""} for i, case in enumerate(cases)])


@pytest.fixture
def scene(people, skill, hr_skill, base_version, make_candidate, django_user_model):
    """Base v1 scored on both skills; Legal's candidate gated against it (blocked: leave-codes dropped)."""
    from django.contrib.auth.models import Permission

    from registry.services.gates import gate_evaluate
    from teams.models import Membership, Role

    people["nora"] = django_user_model.objects.create_user(username="nora", password="pw-nora")
    people["pat"] = django_user_model.objects.create_user(username="pat", password="pw-pat")
    Membership.objects.create(user=people["pat"], team=people["hr"], role=Role.PLATFORM_ADMIN)
    # Everyone may open the admin's case lists; the rows they get there are the rule's business.
    view = Permission.objects.filter(codename__in=["view_evalcase", "view_caseresult"])
    for name in USERS:
        people[name].is_staff = True
        people[name].save()
        people[name].user_permissions.add(*view)

    candidate = make_candidate(skill, status="evaluating")
    record(base_version, skill, passing=0, tag="base")
    record(base_version, hr_skill, passing=5, tag="base")
    record(candidate, skill, passing=20, tag="cand")
    record(candidate, hr_skill, passing=5 - HR_FLIPS, tag="cand")
    gate = gate_evaluate(candidate=candidate)
    assert gate.verdict == "block" and len(gate.flipped) == 20 + HR_FLIPS
    return {"candidate": candidate, "base": base_version}


def fetch(login, scene, who, page):
    client = login(who)
    url = {
        "matrix": reverse("matrix"),
        "matrix_json": reverse("matrix_json"),
        "candidate": reverse("version_detail", args=[scene["candidate"].pk]),
        "base": reverse("version_detail", args=[scene["base"].pk]),
        "upload": reverse("upload"),
        "playground": reverse("playground"),
        "admin_cases": reverse("admin:skills_evalcase_changelist"),
        "admin_results": reverse("admin:evaluation_caseresult_changelist"),
    }[page]
    response = client.get(url)
    return response.status_code, response.content.decode()


def leaked(page: str) -> set[str]:
    """Every case text of a team the page shows."""
    texts = {f"{team}:{kind}": text for team in SLUG for kind, text in (
        ("prompt", prompts(team)), ("reference", references(team)),
        ("base output", outputs(team, "base")), ("candidate output", outputs(team, "cand")))}
    return {label for label, text in texts.items() if text in page}


PAGES = ["matrix", "matrix_json", "candidate", "base", "upload", "playground", "admin_cases", "admin_results"]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("who", list(USERS))
def test_a_page_shows_case_contents_only_to_their_team(login, scene, who, page):
    readable, in_a_team = USERS[who]

    status, body = fetch(login, scene, who, page)

    if page == "candidate":  # Legal's candidate: its flipped cases span Legal's skill and HR's
        if "legal" not in readable:
            assert status in (403, 404) and leaked(body) == set()
            return
        assert status == 200
        expected = {f"{team}:{kind}" for team in readable
                    for kind in ("prompt", "reference", "base output", "candidate output")}
        assert leaked(body) == expected
        if "hr" not in readable:  # HR's flips are counted, not shown
            assert f"{HR_FLIPS} cases</strong> of leave-codes" in body and "(HR)" in body
    elif page == "admin_cases":
        expected = {f"{team}:{kind}" for team in readable for kind in ("prompt", "reference")}
        assert status == 200 and leaked(body) == expected
    elif page == "admin_results":
        # an output is its case's team's, on a version the user may see (Legal's candidate is Legal's)
        expected = {f"{team}:base output" for team in readable}
        expected |= {f"{team}:candidate output" for team in readable if "legal" in readable}
        assert status == 200 and leaked(body) == expected
    else:  # no page of names and scores holds a case
        assert leaked(body) == set()
        if not in_a_team:
            assert status in (200, 403)
            assert "not in a team yet" in body or page in ("matrix_json", "upload")  # upload: "No skills yet"


@pytest.mark.parametrize("who", list(USERS))
def test_the_matrix_shows_every_skills_name_team_and_scores_to_anyone_in_a_team(login, scene, who):
    readable, in_a_team = USERS[who]

    data = login(who).get(reverse("matrix_json")).json()
    page = login(who).get(reverse("matrix")).content.decode()

    if not in_a_team:
        assert data == {"columns": [], "rows": []}
        assert "policy-codes" not in page and "leave-codes" not in page
        return
    assert [(c["name"], c["team"]) for c in data["columns"]] == [("policy-codes", "Legal"), ("leave-codes", "HR")]
    base = next(row for row in data["rows"] if row["version"] == scene["base"].number)
    assert [cell["score"] for cell in base["cells"]] == [0.0, 1.0]
    assert "policy-codes" in page and "leave-codes" in page and "100%" in page
    sees_candidate = scene["candidate"].number in [row["version"] for row in data["rows"]]
    assert sees_candidate == ("legal" in readable)


@pytest.mark.parametrize("who", list(USERS))
def test_the_base_version_page_shows_scores_to_anyone_in_a_team(login, scene, who):
    _, in_a_team = USERS[who]

    status, body = fetch(login, scene, who, "base")

    if in_a_team:
        assert status == 200 and "leave-codes eval" in body and "policy-codes eval" in body
    else:
        assert status == 403 and "not in a team yet" in body and "leave-codes" not in body


@pytest.mark.parametrize("who, offered, not_offered", [
    ("alice", "Policy codes", "Leave codes"),
    ("carol", "Leave codes", "Policy codes"),
    ("nora", None, "Policy codes"),
])
def test_the_upload_form_lists_the_current_teams_skills_only(login, scene, who, offered, not_offered):
    client = login(who)

    shown = client.get(reverse("upload")).content.decode()
    redisplayed = client.post(reverse("upload"), {"skill": scene["candidate"].skill_id}).content.decode()

    for body in (shown, redisplayed):
        assert f">{not_offered}</option>" not in body
    if offered:
        assert f">{offered}</option>" in shown


def test_the_playground_offers_the_lineage_and_the_teams_candidates_only(login, scene):
    candidate = scene["candidate"]

    legal = login("alice").get(reverse("playground")).content.decode()
    hr = login("carol").get(reverse("playground")).content.decode()
    nobody = login("nora").get(reverse("playground"))

    assert candidate.label in legal and scene["base"].label in legal
    assert candidate.label not in hr and scene["base"].label in hr
    assert nobody.status_code == 403 and "not in a team yet" in nobody.content.decode()


def test_the_playground_refuses_another_teams_candidate(login, scene, fake_tasks):
    response = login("carol").post(reverse("playground"), {
        "prompt": "hello", "version": scene["candidate"].pk, "max_new_tokens": 8})

    assert response.status_code == 400 and fake_tasks.calls == []


def test_a_promoted_version_is_everyones_lineage(login, people, hr_skill, make_candidate):
    """Production is the shared model every team builds on: its page is open to every team (its cases,
    per the rule, to its own team only)."""
    from django.utils import timezone

    from registry.models import ModelVersion

    candidate = make_candidate(hr_skill)
    assert login("alice").get(reverse("version_detail", args=[candidate.pk])).status_code == 404
    ModelVersion.objects.filter(pk=candidate.pk).update(status="retired", promoted_at=timezone.now())

    assert login("alice").get(reverse("version_detail", args=[candidate.pk])).status_code == 200


def test_an_archived_skill_keeps_its_column_marked_archived(login, scene, hr_skill):
    from skills.models import Skill

    Skill.objects.filter(pk=hr_skill.pk).update(status=Skill.Status.ARCHIVED)

    data = login("alice").get(reverse("matrix_json")).json()
    page = login("alice").get(reverse("matrix")).content.decode()

    assert [(c["name"], c["archived"]) for c in data["columns"]] == [("policy-codes", False), ("leave-codes", True)]
    assert 'data-testid="archived"' in page


@pytest.mark.parametrize("who", ["bob", "admin"])
def test_the_admins_gate_page_shows_only_the_flips_the_user_may_read(login, people, scene, who):
    from django.contrib.auth.models import Permission

    people[who].user_permissions.add(Permission.objects.get(codename="view_gateresult"))
    gate = scene["candidate"].gate

    body = login(who).get(reverse("admin:registry_gateresult_change", args=[gate.pk])).content.decode()

    assert prompts("legal") in body
    if who == "bob":
        assert leaked(body) <= {"legal:prompt", "legal:reference", "legal:base output", "legal:candidate output"}
        assert f"{HR_FLIPS} case(s) of leave-codes (HR)" in body
    else:
        assert prompts("hr") in body and outputs("hr", "cand") in body
