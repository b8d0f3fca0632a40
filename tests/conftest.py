"""The fixtures live in tests/fixtures, one module per domain, registered here once; the hooks below say
which database and broker a run has and skip what needs services it lacks."""

import os

import pytest
from django.conf import settings

from tests.fixtures.backends import ON_POSTGRES, ON_REDIS

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.fixtures.teams",
    "tests.fixtures.skills",
    "tests.fixtures.registry",
    "tests.fixtures.models",
    "tests.fixtures.gate",
    "tests.fixtures.workers",
    "tests.fixtures.s3",
    "tests.fixtures.web",
    "tests.fixtures.browser",
    "tests.fixtures.exports",
]


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
