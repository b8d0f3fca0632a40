"""Engine tests run with no database; their fixtures (the tiny model, its rows) are in tests/fixtures/models.py."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def engine_on_one_torch_thread(one_torch_thread):
    """Every engine test, not only those that load the tiny model, runs torch on one thread."""
