"""Shared fixtures. People are named (alice requests, bob approves) so tests read like sentences."""

import os

import pytest
from django.conf import settings

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
ON_REDIS = settings.CELERY_BROKER_URL.startswith("redis://")



def pytest_configure(config):
    # Real hashing costs ~0.5 s a user on these CPUs; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("needs_services") and not (ON_POSTGRES and ON_REDIS):
            item.add_marker(pytest.mark.skip(reason="needs real PostgreSQL and Redis (set DATABASE_URL and "
                                              "CELERY_BROKER_URL, as `make test` does where they answer)"))


def pytest_terminal_summary(terminalreporter):
    backend = "PostgreSQL" if ON_POSTGRES else "SQLite"
    broker = "Redis" if ON_REDIS else settings.CELERY_BROKER_URL
    terminalreporter.write_line(f"Accrete test run: database {backend}, broker {broker}.")
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} test(s) skipped — each reason is listed above (-ra).")


@pytest.fixture
def people(db, django_user_model):
    from teams.models import Membership, Role, Team

    legal = Team.objects.create(name="Legal", slug="legal")
    hr = Team.objects.create(name="HR", slug="hr")
    make = django_user_model.objects.create_user
    users = {name: make(username=name, password="pw-" + name) for name in ("alice", "bob", "dave", "carol", "vera")}
    Membership.objects.create(user=users["alice"], team=legal, role=Role.CONTRIBUTOR)
    Membership.objects.create(user=users["bob"], team=legal, role=Role.SKILL_OWNER)
    Membership.objects.create(user=users["dave"], team=legal, role=Role.SKILL_OWNER)
    Membership.objects.create(user=users["vera"], team=legal, role=Role.VIEWER)
    Membership.objects.create(user=users["carol"], team=hr, role=Role.SKILL_OWNER)
    users["admin"] = django_user_model.objects.create_superuser(username="admin", password="pw-admin")
    return {"legal": legal, "hr": hr, **users}


@pytest.fixture
def base_version(db):
    from registry.models import BaseModel
    from registry.services.versions import version_register_base

    base = BaseModel.objects.create(name="tiny", source="hf", source_path="/nowhere", artifact_path="base/tiny",
                                    sha256="0" * 64, context_length=2048)
    return version_register_base(base_model=base)


def skill_with_suite(team, *, slug: str, name: str, cases: int):
    """A skill with one demonstration set and its held-out suite (rows only, no file)."""
    from skills.models import DemonstrationSet, EvalCase, EvalSuite, Skill

    s = Skill.objects.create(team=team, slug=slug, name=name, scorer="exact")
    dset = DemonstrationSet.objects.create(skill=s, version=1, content_sha256=slug[0] * 64, format="prompt_jsonl",
                                           filename=f"{slug}.jsonl", row_count=30, train_count=20, eval_count=10,
                                           split_seed=1)
    suite = EvalSuite.objects.create(kind="skill", source="split", skill=s, demonstration_set=dset)
    EvalCase.objects.bulk_create([EvalCase(suite=suite, key=f"{slug[0]}{i}", reference=f"a{i}",
                                           prompt=[{"role": "user", "content": f"q{i}"}]) for i in range(cases)])
    return s


@pytest.fixture
def skill(people):
    return skill_with_suite(people["legal"], slug="policy-codes", name="Policy codes", cases=20)


@pytest.fixture
def make_candidate(base_version, people):
    """A candidate version as a finished training job leaves it (no weights: services only)."""
    from registry.models import ModelVersion
    from registry.services.versions import version_create_candidate, version_transition
    from training.models import TrainingJob

    def make(skill, *, parent=None, status="awaiting_approval", requested_by=None):
        parent = parent or base_version
        job = TrainingJob.objects.create(skill=skill, demonstration_set=skill.demonstration_sets.first(),
                                         parent_version=parent, status="succeeded",
                                         requested_by=requested_by or people["alice"])
        version = version_create_candidate(job=job, artifact_path=f"versions/{job.pk}", adapter_path="",
                                           checksums={}, metrics={})
        path = {"candidate": [], "evaluating": ["evaluating"], "awaiting_approval": ["evaluating", "awaiting_approval"],
                "blocked": ["evaluating", "blocked"]}[status]
        for to in path:
            version = version_transition(version=version, to=to)
        return ModelVersion.objects.get(pk=version.pk)

    return make
